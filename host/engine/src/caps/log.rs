//! `log`: bounded log lines kept with the stage's transcript.

use super::*;

impl crate::bindings::log::Host for HostState {
    async fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            types::LogLevel::Trace => "trace",
            types::LogLevel::Debug => "debug",
            types::LogLevel::Info => "info",
            types::LogLevel::Warn => "warn",
            types::LogLevel::Error => "error",
        };
        let message = crate::sanitize::truncate(&message, MAX_LOG_LINE).into_owned();
        let call = self.call.admit(
            CapabilityName::Log,
            "log",
            serde_json::json!({ "level": level, "message": message }),
        )?;
        tracing::debug!(plugin = %self.call.plugin.key(), run = %self.call.scope.run_id, "{level}: {}", crate::sanitize::field(&message));
        let ctx = &mut self.call;
        if ctx.logs.len() < MAX_LOG_LINES && message.len() <= ctx.log_budget {
            ctx.log_budget -= message.len();
            ctx.logs.push(LogLine {
                level: level.into(),
                message,
            });
        } else {
            ctx.logs_dropped += 1;
        }
        self.call.finish(call, CapResult::Ok(())).map(|_| ())
    }
}
