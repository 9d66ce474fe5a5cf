//! The Python client package (clients/python) against the real broker and
//! processor: its own test suite (pytest), run from outside the source tree
//! so that the installed package, with its packaged schemas, is what is
//! tested. scripts/test.sh installs it into the tests' Python venv.

use crate::common::*;
use std::process::Command;

const OPERATOR: &str = "operator-token-0123456789";
const ACME: &str = "acme-token-0123456789abc";

#[test]
fn the_python_client_publishes_follows_decides_and_reads_usage() {
    let env = api_env_ready("pyclient", &format!("operator={OPERATOR},tenant:acme={ACME}"), Vec::new());
    let api = format!("http://{}", env.cfg.api_addr);
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python/tests");
    let out = Command::new(env_var("SENDGATE_TEST_PYTHON"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", tests])
        // Outside the source tree: the installed package is imported.
        .current_dir(env.dir.path())
        .env("SENDGATE_TEST_BOOTSTRAP", &env.cfg.bootstrap)
        .env("SENDGATE_TEST_NAMESPACE", &env.cfg.namespace)
        .env("SENDGATE_TEST_API_URL", &api)
        .env("SENDGATE_TEST_OPERATOR_TOKEN", OPERATOR)
        .env("SENDGATE_TEST_TENANT_TOKEN", ACME)
        .output()
        .expect("run pytest");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python client's tests failed:\n{text}\nprocessor log:\n{}", env.log_tail());
    assert!(text.contains(" passed") && !text.contains("skipped"), "{text}");
}
