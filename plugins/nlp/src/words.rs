//! Word lists looked up by hash: each word with a bit per list it is on, in an
//! open-addressing table built at compile time. The table is static data — in a component,
//! part of the memory image every fresh instance maps — so no instance builds anything per
//! call, and a token costs one hash and a probe or two instead of a scan of every list.

/// Words of up to eight lists, each with the lists it is on (bit `i`: `lists[i]`). `SLOTS`
/// must be a power of two above the number of distinct words (a table that would be full
/// fails to compile). Empty slots hold `""`, which is on no list.
pub(crate) struct WordTable<const SLOTS: usize>([(&'static str, u8); SLOTS]);

impl<const SLOTS: usize> WordTable<SLOTS> {
    /// The table of `lists` (at most eight).
    pub(crate) const fn new(lists: &[&[&'static str]]) -> Self {
        assert!(SLOTS.is_power_of_two() && lists.len() <= 8);
        let mut table: [(&'static str, u8); SLOTS] = [("", 0); SLOTS];
        let mut used = 0;
        let mut list = 0;
        while list < lists.len() {
            let words = lists[list];
            let mut w = 0;
            while w < words.len() {
                let word = words[w];
                assert!(!word.is_empty());
                let mut slot = hash(word.as_bytes()) & (SLOTS - 1);
                loop {
                    if table[slot].0.is_empty() {
                        used += 1;
                        assert!(used < SLOTS, "the word table is full: give it more slots");
                        table[slot] = (word, 1 << list);
                        break;
                    }
                    if same(table[slot].0.as_bytes(), word.as_bytes()) {
                        table[slot].1 |= 1 << list;
                        break;
                    }
                    slot = (slot + 1) & (SLOTS - 1);
                }
                w += 1;
            }
            list += 1;
        }
        Self(table)
    }

    /// The lists `word` is on, one bit each; 0 for none.
    pub(crate) fn get(&self, word: &str) -> u8 {
        let mut slot = hash(word.as_bytes()) & (SLOTS - 1);
        loop {
            match self.0.get(slot) {
                // An empty slot holds "" with no lists, so "" finds 0 there too.
                Some(&(w, lists)) if w == word => return lists,
                Some(&(w, _)) if !w.is_empty() => slot = (slot + 1) & (SLOTS - 1),
                _ => return 0,
            }
        }
    }
}

/// FNV-1a.
const fn hash(bytes: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    h as usize
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_found_on_their_lists_and_nothing_else_is() {
        const A: &[&str] = &["the", "a", "über", "in"];
        const B: &[&str] = &["in", "der", "the"];
        static TABLE: WordTable<8> = WordTable::new(&[A, B]);
        assert_eq!(TABLE.get("the"), 0b11);
        assert_eq!(TABLE.get("in"), 0b11);
        assert_eq!(TABLE.get("a"), 0b01);
        assert_eq!(TABLE.get("über"), 0b01);
        assert_eq!(TABLE.get("der"), 0b10);
        for other in ["", "The", "th", "thee", "de", "uber"] {
            assert_eq!(TABLE.get(other), 0, "{other}");
        }
    }
}
