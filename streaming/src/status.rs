//! The error stream's last word: how a remote command ended, as the
//! metav1.Status JSON kubelet writes from `v4.channel.k8s.io` on (and
//! kubectl turns into its own exit code), or as plain text before v4.

use serde_json::json;

/// What the error stream says about an ended command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0, or an attach that ended.
    Success,
    /// The process exited with this non-zero status.
    ExitCode { code: i32, cmd: Vec<String> },
    /// The runtime failed to run or follow it.
    Internal(String),
}

impl Outcome {
    /// metav1.Status as JSON (protocols v4 and v5).
    pub fn status_json(&self) -> Vec<u8> {
        let v = match self {
            Outcome::Success => json!({"metadata": {}, "status": "Success"}),
            Outcome::ExitCode { code, .. } => json!({
                "metadata": {},
                "status": "Failure",
                "message": self.text(),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::Internal(m) => json!({
                "metadata": {},
                "status": "Failure",
                "message": self.text(),
                "reason": "InternalError",
                "details": {"causes": [{"message": m}]},
                "code": 500,
            }),
        };
        v.to_string().into_bytes()
    }

    /// The plain text older protocols carry: nothing on success.
    pub fn text(&self) -> String {
        match self {
            Outcome::Success => String::new(),
            Outcome::ExitCode { code, cmd } => format!(
                "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
            ),
            Outcome::Internal(m) => format!("Internal error occurred: {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_a_cause_kubectl_parses() {
        let o = Outcome::ExitCode {
            code: 3,
            cmd: vec!["sh".into(), "-c".into(), "exit 3".into()],
        };
        let v: serde_json::Value = serde_json::from_slice(&o.status_json()).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        assert!(o.text().contains("exit code 3"));
        let ok: serde_json::Value =
            serde_json::from_slice(&Outcome::Success.status_json()).unwrap();
        assert_eq!(ok, json!({"metadata": {}, "status": "Success"}));
        assert_eq!(Outcome::Success.text(), "");
    }
}
