//! `clusterctl info`'s control-plane section: each control plane of the list asked for its own
//! status (GetControlPlaneStatus), so the operator sees which one leads, which follow, which
//! cannot be reached, and whether each one's store answers.

use std::io::Write;
use std::time::Duration;

use tessera_proto::control_plane::{self, call};
use tessera_proto::pb;
use tessera_proto::pb::control_plane_status::Role;

use super::CtlError;

/// Bound on one control plane's answer (its store check takes up to 2 s).
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks every control plane of `list` (comma-separated URLs) at once and prints one line each.
pub async fn print(list: &str, out: &mut dyn Write) -> Result<(), CtlError> {
    let asks = control_plane::urls(list).into_iter().map(|url| async move {
        let answer = match control_plane::connect_lazy(url) {
            Ok(mut client) => call(
                STATUS_TIMEOUT,
                client.get_control_plane_status(pb::GetControlPlaneStatusRequest {}),
            )
            .await
            .map_err(|status| status.message().to_string()),
            Err(e) => Err(e.to_string()),
        };
        (url.to_string(), answer)
    });
    let answers = futures::future::join_all(asks).await;
    write!(out, "{}", render(&answers))?;
    Ok(())
}

/// The section: a header, then per control plane its URL and what it said of itself.
pub fn render(answers: &[(String, Result<pb::ControlPlaneStatus, String>)]) -> String {
    let mut text = String::from("\n# Control planes\n");
    for (url, answer) in answers {
        let line = match answer {
            Err(reason) => format!("{url} unreachable ({reason})"),
            Ok(status) => {
                let role = match status.role() {
                    Role::Sole => "sole".to_string(),
                    Role::Leader => format!("leader term={}", status.term),
                    Role::Follower if status.leader.is_empty() => {
                        "follower leader=(election under way)".to_string()
                    }
                    Role::Follower => format!("follower leader={}", status.leader),
                };
                let store = if status.store_healthy {
                    "healthy".to_string()
                } else {
                    format!("unhealthy ({})", status.store_error)
                };
                format!(
                    "{url} {role} address={} store={} {store}",
                    status.address, status.store
                )
            }
        };
        text.push_str(&line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_control_plane() {
        let status = |role: Role, leader: &str, healthy| pb::ControlPlaneStatus {
            address: "127.0.0.1:1".into(),
            role: role.into(),
            leader: leader.into(),
            store: "etcd".into(),
            store_healthy: healthy,
            store_error: if healthy { "" } else { "no answer" }.into(),
            term: if role == Role::Leader { 7 } else { 0 },
        };
        let answers = vec![
            (
                "http://a".to_string(),
                Ok(status(Role::Leader, "127.0.0.1:1", true)),
            ),
            (
                "http://b".to_string(),
                Ok(status(Role::Follower, "127.0.0.1:1", true)),
            ),
            (
                "http://c".to_string(),
                Ok(status(Role::Follower, "", false)),
            ),
            (
                "http://d".to_string(),
                Err("connection refused".to_string()),
            ),
        ];
        assert_eq!(
            render(&answers),
            "\n# Control planes\n\
             http://a leader term=7 address=127.0.0.1:1 store=etcd healthy\n\
             http://b follower leader=127.0.0.1:1 address=127.0.0.1:1 store=etcd healthy\n\
             http://c follower leader=(election under way) address=127.0.0.1:1 store=etcd unhealthy (no answer)\n\
             http://d unreachable (connection refused)\n"
        );
    }
}
