//! A real Envoy in front of the test server(s), configured from the
//! repository's own envoy.yaml with only the ports and the descriptor path
//! replaced.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

const LISTENER: &str = "socket_address: { address: 127.0.0.1, port_value: 8080 }";
const UPSTREAM: &str = "        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: 50051 }
";

pub fn envoy_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ORGD_TEST_ENVOY") {
        return PathBuf::from(path);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/envoy");
    assert!(
        local.exists(),
        "Envoy is not installed: run scripts/test.sh (or `scripts/tools.sh ensure_envoy`)"
    );
    local
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The config Envoy runs with: envoy.yaml, listening on `port`, balancing
/// over `upstreams`, loading the descriptor set at `descriptor`.
pub fn config_for(port: u16, upstreams: &[SocketAddr], descriptor: &std::path::Path) -> String {
    let original = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy.yaml"))
        .expect("read envoy.yaml");
    for needle in [LISTENER, UPSTREAM, "\"data/orgd.pb\"", "\"data/openapi.json\""] {
        assert!(
            original.contains(needle),
            "envoy.yaml no longer contains {needle:?}; update tests/api/envoy.rs"
        );
    }
    let endpoints: String = upstreams
        .iter()
        .map(|a| UPSTREAM.replace("port_value: 50051", &format!("port_value: {}", a.port())))
        .collect();
    original
        .replace(LISTENER, &LISTENER.replace("8080", &port.to_string()))
        .replace(UPSTREAM, &endpoints)
        .replace("\"data/orgd.pb\"", &format!("\"{}\"", descriptor.display()))
        .replace(
            "\"data/openapi.json\"",
            &format!("\"{}\"", descriptor.with_file_name("openapi.json").display()),
        )
}

pub struct Envoy {
    pub base: String,
    child: tokio::process::Child,
    _dir: TempDir,
}

impl Envoy {
    /// Starts Envoy and waits until it routes to a healthy orgd.
    pub async fn start(upstreams: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let descriptor = dir.path().join("orgd.pb");
        std::fs::write(&descriptor, orgd::proto::FILE_DESCRIPTOR_SET).expect("descriptor");
        let openapi = orgd::openapi::document().expect("the OpenAPI document");
        std::fs::write(dir.path().join("openapi.json"), openapi.to_string()).expect("openapi.json");
        let port = free_port();
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, config_for(port, upstreams, &descriptor)).expect("config");
        let base_id = u32::from_le_bytes(rand::random::<[u8; 4]>()) % 1_000_000 + 1000;
        let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log");
        let child = tokio::process::Command::new(envoy_binary())
            .arg("-c")
            .arg(&config)
            .args([
                "--base-id",
                &base_id.to_string(),
                "--concurrency",
                "1",
                "--log-level",
                "warn",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start envoy");
        let envoy = Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        envoy.wait_ready().await;
        envoy
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            // An answer other than 503 comes from the upstream (without a
            // token orgd answers 401): Envoy is up, and its health checks
            // let it route there.
            if let Ok(r) = client.get(format!("{}/organizations", self.base)).send().await
                && r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self._dir.path().join("envoy.log")).unwrap_or_default();
        panic!("Envoy did not become ready; its log:\n{log}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
