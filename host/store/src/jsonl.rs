//! Reading JSON Lines files line by line, where each bad line is named and skipped.
//!
//! Files come from help-desk exports and hand edits: a byte-order mark at the start, a
//! Windows line end, one line that is not UTF-8 or is absurdly long must not make the whole
//! file unreadable. [`Lines`] streams the file and yields each non-blank line as text, or
//! the reason it is unusable, with its 1-based line number.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Longest line accepted (a ticket with a long thread fits comfortably).
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// One line of a JSON Lines file.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The line's text (without line end or byte-order mark).
    Text {
        /// 1-based line number.
        number: usize,
        /// The text.
        text: String,
    },
    /// The line cannot be used.
    Bad {
        /// 1-based line number.
        number: usize,
        /// Why.
        problem: String,
    },
}

/// The non-blank lines of a file, streamed.
pub struct Lines<R> {
    reader: R,
    number: usize,
    buf: Vec<u8>,
}

/// Opens `path` for reading line by line.
pub fn open(path: &Path) -> std::io::Result<Lines<BufReader<std::fs::File>>> {
    Ok(Lines::new(BufReader::new(std::fs::File::open(path)?)))
}

impl<R: BufRead> Lines<R> {
    /// Lines of `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            number: 0,
            buf: Vec::new(),
        }
    }

    /// Reads one raw line into `buf` (at most [`MAX_LINE_BYTES`] kept); `Ok(None)` at the
    /// end, `Ok(Some(true))` when the line was longer than that.
    fn raw_line(&mut self) -> std::io::Result<Option<bool>> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if read == 0 {
            return Ok(None);
        }
        if self.buf.len() as u64 == limit && self.buf.last() != Some(&b'\n') {
            // Skip the rest of the over-long line.
            let mut skip = Vec::new();
            loop {
                skip.clear();
                let n = (&mut self.reader)
                    .take(1 << 20)
                    .read_until(b'\n', &mut skip)?;
                if n == 0 || skip.last() == Some(&b'\n') {
                    break;
                }
            }
            return Ok(Some(true));
        }
        Ok(Some(false))
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = std::io::Result<Line>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let too_long = match self.raw_line() {
                Ok(None) => return None,
                Ok(Some(t)) => t,
                Err(e) => return Some(Err(e)),
            };
            self.number += 1;
            let number = self.number;
            if too_long {
                return Some(Ok(Line::Bad {
                    number,
                    problem: format!(
                        "the line is longer than {} MiB; split the record or shorten it",
                        MAX_LINE_BYTES >> 20
                    ),
                }));
            }
            let mut bytes: &[u8] = &self.buf;
            if number == 1 {
                bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            }
            while let Some((last, rest)) = bytes.split_last() {
                if *last == b'\n' || *last == b'\r' {
                    bytes = rest;
                } else {
                    break;
                }
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Ok(match std::str::from_utf8(bytes) {
                Ok(text) => Line::Text {
                    number,
                    text: text.to_string(),
                },
                Err(e) => Line::Bad {
                    number,
                    problem: format!(
                        "not valid UTF-8 (byte {} of the line); save the file as UTF-8",
                        e.valid_up_to() + 1
                    ),
                },
            }));
        }
    }
}

/// Records of type `T` from a JSON Lines file, each with its line number, and the rejected
/// lines as `file:line: problem; line skipped`. `check` validates what serde cannot.
pub struct Parsed<T> {
    /// Good records with their line numbers.
    pub records: Vec<(usize, T)>,
    /// Rejected lines, readable.
    pub rejected: Vec<String>,
}

/// Reads `path` into `T`s: lines that are not UTF-8, not JSON, not `T` or fail `check` are
/// named and skipped; only an unreadable file is an error.
pub fn read<T: serde::de::DeserializeOwned>(
    path: &Path,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<Parsed<T>, ReadError> {
    let io = |source| ReadError {
        path: path.to_path_buf(),
        source,
    };
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    let name = path.display();
    for line in open(path).map_err(io)? {
        match line.map_err(io)? {
            Line::Text { number, text } => match serde_json::from_str::<T>(&text)
                .map_err(|e| e.to_string())
                .and_then(|t| check(&t).map(|()| t))
            {
                Ok(t) => records.push((number, t)),
                Err(e) => rejected.push(format!("{name}:{number}: {e}; line skipped")),
            },
            Line::Bad { number, problem } => {
                rejected.push(format!("{name}:{number}: {problem}; line skipped"));
            }
        }
    }
    Ok(Parsed { records, rejected })
}

/// A JSON Lines file could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Vec<Line> {
        Lines::new(std::io::Cursor::new(bytes.to_vec()))
            .map(|l| l.unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    #[test]
    fn bom_crlf_and_blank_lines() {
        let got = lines(b"\xef\xbb\xbf{\"a\":1}\r\n\r\n  \n{\"b\":2}");
        assert_eq!(
            got,
            vec![
                Line::Text {
                    number: 1,
                    text: "{\"a\":1}".into()
                },
                Line::Text {
                    number: 4,
                    text: "{\"b\":2}".into()
                },
            ]
        );
    }

    #[test]
    fn a_bad_utf8_line_is_named_and_the_rest_is_read() {
        let got = lines(b"{\"a\":1}\n{\"b\":\"\xff\xfe\"}\n{\"c\":3}\n");
        assert!(matches!(&got[1], Line::Bad { number: 2, problem } if problem.contains("UTF-8")));
        assert!(matches!(&got[2], Line::Text { number: 3, .. }));
    }

    #[test]
    fn an_over_long_line_is_skipped_without_losing_the_next() {
        let mut bytes = vec![b'x'; MAX_LINE_BYTES + 10];
        bytes.extend_from_slice(b"\n{\"ok\":true}\n");
        let got = lines(&bytes);
        assert!(matches!(&got[0], Line::Bad { number: 1, .. }));
        assert_eq!(
            got[1],
            Line::Text {
                number: 2,
                text: "{\"ok\":true}".into()
            }
        );
    }
}
