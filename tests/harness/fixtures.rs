//! Starting the Python fixtures (tests/fixtures/) on a topology side.

use std::time::Duration;

use serde_json::Value;

use super::binaries::{PYTHON, fixture};
use super::process::{Finished, Launch, Server, run_to_end};

/// `echo_server.py <args>` launched as `launch` says; returns once it
/// printed READY. Pass `--port 0` (the default) and read `Server::port()`.
pub fn echo_server(launch: &Launch, args: &[&str]) -> Server {
    let mut cmd = launch.command(PYTHON);
    cmd.arg(fixture("echo_server.py")).args(args);
    Server::spawn("echo_server.py", cmd, Duration::from_secs(20))
}

/// Runs `client.py <args>` to its end (killed after `timeout`).
pub fn run_client(launch: &Launch, args: &[&str], timeout: Duration) -> Finished {
    let mut cmd = launch.command(PYTHON);
    cmd.arg(fixture("client.py")).args(args);
    run_to_end(&mut cmd, timeout)
}

/// `client.py --addr ADDR --port PORT --count N <extra>`: one record per
/// connection, each {"local": [ip, port], "reply": <server record>}.
/// Panics (with the client's output) unless every connection was answered.
pub fn connect(launch: &Launch, addr: &str, port: u16, count: usize, extra: &[&str]) -> Vec<Value> {
    let port = port.to_string();
    let count_s = count.to_string();
    let mut args = vec!["--addr", addr, "--port", &port, "--count", &count_s];
    args.extend_from_slice(extra);
    // Generous: a connection takes well under a millisecond here, but a
    // loaded 2-core CI machine must not fail on time alone.
    let timeout = Duration::from_secs(60 + count as u64 / 20);
    let out = run_client(launch, &args, timeout);
    let what = format!("client.py {}", args.join(" "));
    let records = out.json_lines();
    out.expect_success(&what);
    assert_eq!(records.len(), count, "{what}: wrong number of records");
    records
}

/// One connection that stays open (`client.py --again N`; the server must
/// run with `--hold`). Its first record is read before this returns; each
/// `ask_again()` re-asks the same connection and returns the new record.
pub struct HeldConnection {
    proc_: Server,
    first: Value,
}

impl HeldConnection {
    pub fn open(launch: &Launch, addr: &str, port: u16, again: usize) -> HeldConnection {
        let mut cmd = launch.command(PYTHON);
        cmd.arg(fixture("client.py")).args([
            "--addr",
            addr,
            "--port",
            &port.to_string(),
            "--again",
            &again.to_string(),
            "--timeout",
            "30",
        ]);
        let proc_ = Server::interactive("client.py --again", cmd);
        let first = proc_.next_json(Duration::from_secs(20));
        HeldConnection { proc_, first }
    }

    /// The record of the first question, asked right after connecting.
    pub fn first(&self) -> &Value {
        &self.first
    }

    pub fn ask_again(&self) -> Value {
        self.proc_.send_line("");
        self.proc_.next_json(Duration::from_secs(20))
    }
}
