//! Exec, Attach and PortForward: each checks its request, the container
//! or pod it names, and answers with a single-use URL on berthd's
//! streaming server (the `berth-streaming` crate), where the client's
//! streams are served.

use berth_containers::State;
use berth_pod::SandboxState;
use berth_streaming::StreamRequest;
use berth_streaming::tokens::IssueError;
use k8s_cri::v1::{
    AttachRequest, AttachResponse, ExecRequest, ExecResponse, PortForwardRequest,
    PortForwardResponse,
};
use tonic::Status;

use super::Shared;
use crate::error;

fn issued(shared: &Shared, req: StreamRequest) -> Result<String, Status> {
    shared.streaming.url(req).map_err(|e| match e {
        IssueError::TooMany(_) => Status::resource_exhausted(e.to_string()),
        IssueError::Random(_) => Status::internal(e.to_string()),
    })
}

/// The streams asked for: at least one, and a terminal has no stderr of
/// its own (kubelet's rules).
fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), Status> {
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout or stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be set: a terminal carries stderr in stdout",
        ));
    }
    Ok(())
}

/// The full id of a running container.
fn running(shared: &Shared, id: &str) -> Result<String, Status> {
    if id.is_empty() {
        return Err(error::missing("container_id"));
    }
    let rec = shared.containers.status(id).map_err(error::container)?;
    if rec.state != State::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is not running (state {:?})",
            rec.id, rec.state
        )));
    }
    Ok(rec.id)
}

pub fn exec(shared: &Shared, r: ExecRequest) -> Result<ExecResponse, Status> {
    if r.cmd.is_empty() || r.cmd.first().is_some_and(String::is_empty) {
        return Err(Status::invalid_argument("cmd is required"));
    }
    check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
    let container_id = running(shared, &r.container_id)?;
    let url = issued(
        shared,
        StreamRequest::Exec {
            container_id,
            cmd: r.cmd,
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        },
    )?;
    Ok(ExecResponse { url })
}

pub fn attach(shared: &Shared, r: AttachRequest) -> Result<AttachResponse, Status> {
    check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
    let container_id = running(shared, &r.container_id)?;
    let url = issued(
        shared,
        StreamRequest::Attach {
            container_id,
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        },
    )?;
    Ok(AttachResponse { url })
}

pub fn port_forward(shared: &Shared, r: PortForwardRequest) -> Result<PortForwardResponse, Status> {
    if r.pod_sandbox_id.is_empty() {
        return Err(error::missing("pod_sandbox_id"));
    }
    let ports = r
        .port
        .iter()
        .map(|p| {
            u16::try_from(*p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| Status::invalid_argument(format!("port {p} is not in 1-65535")))
        })
        .collect::<Result<Vec<u16>, Status>>()?;
    let pod = shared.pods.status(&r.pod_sandbox_id).map_err(error::pod)?;
    if pod.state != SandboxState::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    let url = issued(
        shared,
        StreamRequest::PortForward {
            pod_id: pod.id,
            ports,
        },
    )?;
    Ok(PortForwardResponse { url })
}
