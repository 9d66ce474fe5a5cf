//! `sendgate mcp` driven by a real MCP client, the official Python SDK
//! (tests/interop/mcp_client.py), against the real broker and processor:
//! over stdio (the client spawns `sendgate mcp`) and over streamable HTTP
//! (the client's bearer token reaches the API). The agent checks a send,
//! requests it and gets its ALLOWED decision, reads usage, gets HELD for a
//! send that needs approval, and has a decision explained.

use crate::common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-0123456789";
const ACME: &str = "acme-token-0123456789abc";

fn run_client(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mcp_client.py");
    let out = Command::new(env_var("SENDGATE_TEST_PYTHON")).arg(script).args(args).output().expect("run the MCP client");
    assert!(out.status.success(), "the MCP client failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// What every transport must give the agent.
fn check_session(v: &Value, sender: &str) {
    let tools: Vec<&str> = v["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tools, ["check_send", "explain_decision", "get_decision", "get_usage", "request_send"], "{v}");
    assert!(v["schemas"].as_object().unwrap().values().all(|s| s == true), "every tool declares its output schema: {v}");

    let check = &v["check"]["structured"];
    assert_eq!((check["may_send_now"].as_bool(), check["status"].as_str()), (Some(true), Some("ALLOWED")), "{v}");
    assert!(check["checks"].as_array().unwrap().iter().any(|c| c["check"] == "window"), "the checks behind it: {check}");

    let request = &v["request"]["structured"];
    assert_eq!((request["may_send_now"].as_bool(), request["status"].as_str(), request["tenant"].as_str()), (Some(true), Some("ALLOWED"), Some("acme")), "{v}");
    assert!(request["advice"].as_str().unwrap().starts_with("Allowed"), "{request}");
    assert_eq!(v["decision"]["structured"]["status"], "ALLOWED", "{v}");

    // The request was counted; check_send reserved nothing.
    let usage = &v["usage"]["structured"];
    let hour = usage["windows"].as_array().unwrap().iter().find(|w| w["window"] == "hour" && w["class"] == "outbound").unwrap_or_else(|| panic!("{usage}"));
    assert_eq!(hour["used"], 1, "{usage}");
    assert_eq!(usage["scope"], format!("mailbox:{sender}"));
    assert!(usage["remaining_now"].as_i64().unwrap() >= 1, "{usage}");

    let held = &v["held"]["structured"];
    assert_eq!((held["may_send_now"].as_bool(), held["status"].as_str()), (Some(false), Some("HELD")), "{v}");
    assert!(held["advice"].as_str().unwrap().contains("approve"), "{held}");

    let explain = &v["explain"]["structured"];
    assert_eq!(explain["verdict"]["status"], "ALLOWED", "{v}");
    assert!(explain["checks"].as_array().unwrap().len() >= 3, "{explain}");

    assert_eq!(v["bad"]["is_error"], true, "a bad scope is a tool error the agent reads: {v}");
    assert!(v["bad"]["text"].to_string().contains("400"), "{v}");
}

#[test]
fn an_agent_checks_requests_and_reads_usage_through_mcp_over_stdio_and_http() {
    let env = api_env_ready("mcp", &format!("operator={OPERATOR},tenant:acme={ACME}"), Vec::new());
    let api = format!("http://{}", env.cfg.api_addr);

    // stdio: the client spawns `sendgate mcp` with the tenant's token.
    let stdio = run_client(&["stdio", env!("CARGO_BIN_EXE_sendgate"), &api, ACME, "agent-stdio@acme.com"]);
    check_session(&stdio, "agent-stdio@acme.com");

    // Streamable HTTP: no token configured; the client's bearer token is used.
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_sendgate"))
        .args(["mcp", "--http", &format!("127.0.0.1:{port}")])
        .env("SENDGATE_MCP_API_URL", &api)
        .env_remove("SENDGATE_MCP_API_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sendgate mcp --http never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let http = run_client(&["http", &format!("http://127.0.0.1:{port}/mcp"), ACME, "agent-http@acme.com"]);
    check_session(&http, "agent-http@acme.com");
    // A wrong token: the API refuses it, and the agent reads why.
    let refused = Command::new(env_var("SENDGATE_TEST_PYTHON")).arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mcp_client.py")).args(["http", &format!("http://127.0.0.1:{port}/mcp"), "not-a-token-0123456789abcdef", "x@acme.com"]).output().unwrap();
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("401"), "a wrong token is refused by the API: {text} {}", String::from_utf8_lossy(&refused.stderr));
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
}
