//! `config`: the plugin's settings and data, for plugins that cannot bind them.

use super::*;

/// Most ranges one `config.read-data` call may name.
pub const MAX_DATA_RANGES: usize = 65_536;

/// The bytes of each range of `data` (`lengths[i]` from `offsets[i]`), concatenated; or why
/// not, naming the range. At most `max_bytes` in all (the plugin could not receive more).
fn gather(
    data: &[u8],
    offsets: &[u64],
    lengths: &[u32],
    max_bytes: u64,
) -> Result<Vec<u8>, String> {
    if offsets.len() != lengths.len() {
        return Err(format!(
            "{} offsets and {} lengths: give one length per offset",
            offsets.len(),
            lengths.len()
        ));
    }
    if offsets.len() > MAX_DATA_RANGES {
        return Err(format!(
            "{} ranges in one call; at most {MAX_DATA_RANGES} are accepted, split the read",
            offsets.len()
        ));
    }
    let mut total: u64 = 0;
    for (i, (&offset, &length)) in offsets.iter().zip(lengths).enumerate() {
        let end = offset.checked_add(u64::from(length));
        if end.is_none_or(|end| end > data.len() as u64) {
            return Err(format!(
                "range {i} ({length} bytes at offset {offset}) is not inside the data ({} bytes)",
                data.len()
            ));
        }
        total += u64::from(length);
    }
    if total > max_bytes {
        return Err(format!(
            "the ranges add up to {total} bytes, more than the plugin's memory limit ({max_bytes} bytes)"
        ));
    }
    let mut out = Vec::with_capacity(total as usize);
    for (&offset, &length) in offsets.iter().zip(lengths) {
        // In bounds: checked above.
        let start = offset as usize;
        out.extend_from_slice(&data[start..start + length as usize]);
    }
    Ok(out)
}

impl HostState {
    /// What the audit log keeps of an answer holding the plugin's data (`config.data`,
    /// `config.read-data`): its size and the data's digest, not the bytes — models are large
    /// and the digest names them.
    fn data_record(&self, bytes: usize) -> serde_json::Value {
        serde_json::json!({ "bytes": bytes, "digest": self.call.plugin.config_digest })
    }
}

impl crate::bindings::config::Host for HostState {
    async fn settings(&mut self) -> wasmtime::Result<String> {
        let call = self
            .call
            .admit(CapabilityName::Config, "settings", serde_json::Value::Null)?;
        let text = String::from_utf8_lossy(&self.call.plugin.settings).into_owned();
        let answer = self.call.finish(call, CapResult::Ok(text))?;
        Ok(answer.unwrap_or_default())
    }

    async fn data(&mut self) -> wasmtime::Result<Vec<u8>> {
        let call = self
            .call
            .admit(CapabilityName::Config, "data", serde_json::Value::Null)?;
        let data = self.call.plugin.data.to_vec();
        let answer = self
            .call
            .finish(call, CapResult::Ok(self.data_record(data.len())))?;
        Ok(answer.map(|_| data).unwrap_or_default())
    }

    async fn read_data(
        &mut self,
        offsets: Vec<u64>,
        lengths: Vec<u32>,
    ) -> wasmtime::Result<Result<Vec<u8>, types::CapabilityError>> {
        let call = self.call.admit(
            CapabilityName::Config,
            "read-data",
            serde_json::json!({ "ranges": offsets.len() }),
        )?;
        let max_bytes = u64::from(self.call.plugin.limits.memory_mib) * 1024 * 1024;
        match gather(&self.call.plugin.data, &offsets, &lengths, max_bytes) {
            Ok(bytes) => {
                let answer = self
                    .call
                    .finish(call, CapResult::Ok(self.data_record(bytes.len())))?;
                Ok(Ok(answer.map(|_| bytes).unwrap_or_default()))
            }
            Err(message) => self
                .call
                .finish::<()>(
                    call,
                    CapResult::Err(types::CapabilityError::InvalidArgument(message)),
                )
                .map(|r| r.map(|()| Vec::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather_ranges(data: &[u8], ranges: &[(u64, u32)], max: u64) -> Result<Vec<u8>, String> {
        let (offsets, lengths): (Vec<u64>, Vec<u32>) = ranges.iter().copied().unzip();
        gather(data, &offsets, &lengths, max)
    }

    #[test]
    fn gathers_ranges_in_order_and_refuses_what_is_outside() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(
            gather_ranges(&data, &[(10, 3), (0, 2), (255, 1), (7, 0)], 1024),
            Ok(vec![10, 11, 12, 0, 1, 255])
        );
        assert_eq!(gather_ranges(&data, &[], 1024), Ok(vec![]));
        assert_eq!(gather_ranges(&data, &[(256, 0)], 1024), Ok(vec![]));
        let refused = |r: Result<Vec<u8>, String>| r.expect_err("refused");
        assert_eq!(
            refused(gather_ranges(&data, &[(0, 1), (250, 7)], 1024)),
            "range 1 (7 bytes at offset 250) is not inside the data (256 bytes)"
        );
        assert!(refused(gather_ranges(&data, &[(u64::MAX, 2)], 1024)).starts_with("range 0 "));
        assert!(refused(gather_ranges(&data, &[(257, 0)], 1024)).starts_with("range 0 "));
        assert_eq!(
            refused(gather_ranges(&data, &[(0, 200), (0, 200)], 300)),
            "the ranges add up to 400 bytes, more than the plugin's memory limit (300 bytes)"
        );
        assert_eq!(
            refused(gather(&data, &[1, 2], &[1], 1024)),
            "2 offsets and 1 lengths: give one length per offset"
        );
        let many = vec![(0, 0); MAX_DATA_RANGES + 1];
        assert!(refused(gather_ranges(&data, &many, 1024)).starts_with("65537 ranges in one call"));
    }
}
