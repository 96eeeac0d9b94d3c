//! `config`: the plugin's settings and data, for plugins that cannot bind them.

use super::*;

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
        // Recorded by size, not content: models are large and have their own digest.
        let data = self.call.plugin.data.to_vec();
        let len = data.len();
        let answer = self.call.finish(
            call,
            CapResult::Ok(
                serde_json::json!({ "bytes": len, "digest": self.call.plugin.config_digest }),
            ),
        )?;
        Ok(answer.map(|_| data).unwrap_or_default())
    }
}
