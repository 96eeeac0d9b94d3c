//! Workspaces for end-to-end tests, driven through the real binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `deskhost` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_deskhost"))
}

/// The cargo target directory the binary was built into (`target/<profile>/deskhost` →
/// `target`).
pub fn target_dir() -> PathBuf {
    bin()
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The repository root (the tests belong to `host/cli`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where the built plugin components are.
pub fn plugin_dir() -> PathBuf {
    let dir = std::env::var_os("DESKHOST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip2").join("plugin"));
    assert!(
        dir.join("deskhost_probe.wasm").exists() && dir.join("deskhost_triage.wasm").exists(),
        "the plugin components are not built in {}; run tests/run.sh, or cargo build --profile plugin --target wasm32-wasip2 \
         -p deskhost-triage -p deskhost-reply -p deskhost-escalation -p deskhost-probe",
        dir.display()
    );
    dir
}

/// The output of one command.
#[derive(Debug)]
pub struct Out {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Standard output as JSON Lines.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
            .collect()
    }

    /// Standard output as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON: {e}: {}", self.stdout))
    }
}

/// The store the suite runs on: `DESKHOST_TEST_BACKEND=postgres` runs every workspace on a
/// database of its own in a private PostgreSQL server (tests/support/postgres.rs);
/// otherwise each workspace has its embedded SQLite file.
pub fn on_postgres() -> bool {
    std::env::var("DESKHOST_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// A workspace in a temporary directory.
pub struct Ws {
    dir: tempfile::TempDir,
    db_url: Option<String>,
}

impl Ws {
    /// A workspace from the demo template with the KB and CRM imported, on the suite's
    /// backend (see [`on_postgres`]).
    pub fn new() -> Self {
        let db_url = on_postgres().then(|| {
            crate::postgres::shared()
                .unwrap_or_else(|| {
                    panic!("DESKHOST_TEST_BACKEND=postgres but PostgreSQL cannot start here")
                })
                .database("e2e")
        });
        Self::create(db_url)
    }

    /// The same on a PostgreSQL database whatever the suite's backend; `None` (with the
    /// reason printed) when PostgreSQL is not available and not required.
    pub fn new_on_postgres() -> Option<Self> {
        let server = crate::postgres::shared()?;
        Some(Self::create(Some(server.database("e2e"))))
    }

    /// Another workspace (another directory, as on another machine) on this one's store.
    /// `None` for SQLite workspaces: their store is a file in their own directory.
    pub fn join(&self) -> Option<Self> {
        self.db_url.clone().map(|url| Self::create(Some(url)))
    }

    /// `init --force` of this workspace's directory again (the same store settings).
    pub fn reinit(&self) -> Out {
        let template = repo().join("examples").join("workspace");
        let plugins = plugin_dir();
        self.ok(&[
            "init",
            self.path_str(),
            "--from",
            template.to_str().unwrap_or(""),
            "--plugins",
            plugins.to_str().unwrap_or(""),
            "--force",
            "--json",
        ])
    }

    fn create(db_url: Option<String>) -> Self {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let ws = Ws { dir: tmp, db_url };
        let template = repo().join("examples").join("workspace");
        let plugins = plugin_dir();
        let out = ws.raw(&[
            "init",
            ws.path_str(),
            "--from",
            template.to_str().unwrap_or(""),
            "--plugins",
            plugins.to_str().unwrap_or(""),
            "--force",
        ]);
        assert_eq!(out.code, 0, "init failed: {out:?}");
        ws.ok(&["kb", "import", &ws.file("kb/articles.jsonl")]);
        ws.ok(&["crm", "import", &ws.file("crm/customers.jsonl")]);
        ws
    }

    /// A workspace with the triage model trained on its history and risk examples, as the
    /// demo does.
    pub fn trained() -> Self {
        Self::new().train()
    }

    /// Trains the triage model as the demo does.
    pub fn train(self) -> Self {
        let ws = self;
        ws.ok(&[
            "train",
            &ws.file("history.jsonl"),
            &ws.file("risk.jsonl"),
            "--fields",
            "category,queue,priority,risk",
            "--name",
            "lumio-demo",
        ]);
        ws
    }

    /// The workspace directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_str(&self) -> &str {
        self.dir.path().to_str().unwrap_or("")
    }

    /// A path inside the workspace, as a string.
    pub fn file(&self, rel: &str) -> String {
        self.path().join(rel).to_string_lossy().into_owned()
    }

    fn raw(&self, args: &[&str]) -> Out {
        self.raw_env(args, &[])
    }

    /// The compile cache the tests share.
    pub fn cache_dir() -> PathBuf {
        bin()
            .parent()
            .map(|d| d.join("e2e-compile-cache"))
            .unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .args(args)
            .env("DESKHOST_CACHE_DIR", Self::cache_dir())
            .env_remove("DESKHOST_WORKSPACE")
            .env_remove("DESKHOST_PROFILER");
        match &self.db_url {
            Some(url) => command.env("DESKHOST_DATABASE_URL", url),
            None => command.env_remove("DESKHOST_DATABASE_URL"),
        };
        command
    }

    fn raw_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut command = self.command(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run deskhost: {e}"));
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `deskhost -w WS args...` with extra environment variables.
    pub fn cmd_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut full = vec!["-w", self.path_str()];
        full.extend_from_slice(args);
        self.raw_env(&full, env)
    }

    /// Creates an API token through the CLI; returns its secret.
    pub fn token(&self, name: &str, role: &str) -> String {
        let created = self
            .ok(&["token", "create", "--name", name, "--role", role, "--json"])
            .json();
        created["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no secret in {created}"))
            .to_string()
    }

    /// Starts `deskhost serve` on 127.0.0.1:0 and waits for its address; [`Server::client`]
    /// carries an admin token.
    pub fn serve(&self, env: &[(&str, &str)]) -> Server {
        self.serve_with(&[], env)
    }

    /// [`Ws::serve`] with more `serve` arguments.
    pub fn serve_with(&self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let token = self.token(&format!("e2e-admin-{}", rand_suffix()), "admin");
        let log = self.path().join(format!("serve-{}.log", rand_suffix()));
        let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let mut command = self.command(&[
            "-w",
            self.path_str(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--watch-ms",
            "10",
        ]);
        command.args(extra);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start deskhost serve: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .unwrap_or_else(|e| panic!("{e}"));
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "serve did not start: {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            child,
            url,
            log,
            token,
        }
    }

    /// Starts `deskhost -w WS args...` in the background (output discarded).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut full = vec!["-w", self.path_str()];
        full.extend_from_slice(args);
        self.command(&full)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start deskhost: {e}"))
    }

    /// [`Ws::spawn`] with extra environment variables.
    pub fn spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let mut full = vec!["-w", self.path_str()];
        full.extend_from_slice(args);
        let mut command = self.command(&full);
        for (k, v) in env {
            command.env(k, v);
        }
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start deskhost: {e}"))
    }

    /// Starts `deskhost -w WS args...` in the background with its output in files.
    pub fn spawn_logged(&self, args: &[&str], stdout: &Path, stderr: &Path) -> std::process::Child {
        let mut full = vec!["-w", self.path_str()];
        full.extend_from_slice(args);
        let file =
            |p: &Path| std::fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        self.command(&full)
            .stdout(file(stdout))
            .stderr(file(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start deskhost: {e}"))
    }

    /// Runs `deskhost -w WS args...`.
    pub fn cmd(&self, args: &[&str]) -> Out {
        let mut full = vec!["-w", self.path_str()];
        full.extend_from_slice(args);
        self.raw(&full)
    }

    /// [`Ws::cmd_env`] that must succeed.
    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let out = self.cmd_env(args, env);
        assert_eq!(out.code, 0, "deskhost {args:?} failed: {out:?}");
        out
    }

    /// Runs a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> Out {
        let out = self.cmd(args);
        assert_eq!(out.code, 0, "deskhost {args:?} failed: {out:?}");
        out
    }

    /// Writes `tickets` as JSON Lines and runs them; returns the output and the results.
    pub fn run(&self, tickets: &[Value]) -> (Out, Vec<Value>) {
        self.run_with(tickets, &[])
    }

    /// [`Ws::run`] with `args` given to `run` before the file.
    pub fn run_with(&self, tickets: &[Value], args: &[&str]) -> (Out, Vec<Value>) {
        let path = self.path().join(format!(
            "tickets-{}.jsonl",
            std::process::id() ^ rand_suffix()
        ));
        let text: String = tickets.iter().map(|t| format!("{t}\n")).collect();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write tickets: {e}"));
        let mut command = vec!["run"];
        command.extend_from_slice(args);
        command.push(path.to_str().unwrap_or(""));
        let out = self.cmd(&command);
        let lines = out.lines();
        (out, lines)
    }

    /// `n` tickets cycled from the demo ones with ids `{prefix}-00000`…, written as JSON Lines
    /// to `file` in the workspace; returns its path.
    pub fn many_tickets(&self, prefix: &str, n: usize, file: &str) -> PathBuf {
        let demo = self.demo_tickets();
        let text: String = (0..n)
            .map(|i| {
                let mut t = demo[i % demo.len()].clone();
                t["id"] = Value::String(format!("{prefix}-{i:05}"));
                format!("{t}\n")
            })
            .collect();
        let path = self.path().join(file);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write tickets: {e}"));
        path
    }

    /// The demo tickets of the workspace.
    pub fn demo_tickets(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path().join("tickets.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Installs the probe plugin as `id@0.1.0` of `kind` with `settings` and a manifest tail
    /// (limits and grants) directly into the workspace's plugins/; returns `id@0.1.0`.
    pub fn install_probe(&self, id: &str, kind: &str, settings: Value, tail: &str) -> String {
        let dir = self.path().join("plugins").join(id).join("0.1.0");
        write_probe(&dir, id, "0.1.0", kind, &settings, tail)
    }

    /// Replaces `from` with `to` in the workspace file `rel` (e.g. `deskhost.toml`); panics
    /// when `from` is not there, so a test never silently tests the unedited file.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        edit_file(&self.path().join(rel), from, to);
    }

    /// Points `slot` at `value` (or removes it) in deskhost.toml.
    pub fn set_slot(&self, slot: &str, value: Option<&str>) {
        let path = self.path().join("deskhost.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter_map(|l| {
                if l.starts_with(&format!("{slot} = ")) {
                    value.map(|v| format!("{slot} = \"{v}\""))
                } else {
                    Some(l.to_string())
                }
            })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap_or_else(|e| panic!("{e}"));
    }

    /// A connection to the workspace's database (SQLite or PostgreSQL: write SQL both
    /// take, `$1` parameters, and [`Ws::json_text`] for JSON fields).
    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match &self.db_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.path().join("deskhost.db").display()),
        };
        sqlx::AnyPool::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("db: {e}"))
    }

    /// The workspace's store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.db_url.is_some()
    }

    /// SQL for the text at `path` (`a.b`) in the JSON column `column`.
    pub fn json_text(&self, column: &str, path: &str) -> String {
        if self.is_postgres() {
            format!("({column}::jsonb #>> '{{{}}}')", path.replace('.', ","))
        } else {
            format!("json_extract({column}, '$.{path}')")
        }
    }

    /// What someone with write access to the database runs before rewriting history: the
    /// append-only triggers go.
    pub fn drop_audit_triggers(&self) -> &'static [&'static str] {
        if self.is_postgres() {
            &[
                "DROP TRIGGER audit_no_change ON audit",
                "DROP TRIGGER audit_no_truncate ON audit",
            ]
        } else {
            &[
                "DROP TRIGGER audit_no_update",
                "DROP TRIGGER audit_no_delete",
            ]
        }
    }
}

/// A running `deskhost serve`; stopped when dropped.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    /// An admin token's secret.
    pub token: String,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits (up to 60 s) for the exit; returns the exit code and the log.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => break None,
            }
        };
        (code, self.log())
    }

    /// An HTTP client that sends the admin token.
    pub fn client(&self) -> reqwest::Client {
        self.client_with(&self.token)
    }

    /// An HTTP client that sends `token`.
    pub fn client_with(&self, token: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET route` (`/v1/...`) with `token`, the answer as JSON.
    pub async fn get_json(&self, token: &str, route: &str) -> Value {
        self.client_with(token)
            .get(format!("{}{route}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The `/metrics` text, read with the admin token.
    pub async fn metrics(&self) -> String {
        self.client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default()
    }

    /// What the server wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a plugin directory holding the probe component as `id@version` of `kind`, with
/// `settings` and a manifest tail (limits and grants); returns `id@version`.
pub fn write_probe(
    dir: &Path,
    id: &str,
    version: &str,
    kind: &str,
    settings: &Value,
    tail: &str,
) -> String {
    let component =
        std::fs::read(plugin_dir().join("deskhost_probe.wasm")).unwrap_or_else(|e| panic!("{e}"));
    write_plugin(
        dir,
        id,
        version,
        kind,
        ("deskhost_probe.wasm", &component),
        settings,
        tail,
    )
}

/// Writes a plugin directory with `component` (file name, bytes); returns `id@version`.
pub fn write_plugin(
    dir: &Path,
    id: &str,
    version: &str,
    kind: &str,
    component: (&str, &[u8]),
    settings: &Value,
    tail: &str,
) -> String {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join(component.0), component.1).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("settings.json"), settings.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let manifest = format!(
        "id = \"{id}\"\nversion = \"{version}\"\nkind = \"{kind}\"\nwit = \"0.1.0\"\ncomponent = \"{}\"\nsha256 = \"{}\"\nconfig = \"settings.json\"\n{tail}\n",
        component.0,
        deskhost_engine::util::sha256_hex(component.1)
    );
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap_or_else(|e| panic!("{e}"));
    format!("{id}@{version}")
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed) << 20
}

/// The default probe grants: what the probe component imports (kb, crm) must be granted.
pub const PROBE_GRANTS: &str = "[grants.helpdesk]\n[grants.kb]\ncollections = [\"public\"]\n[grants.crm]\nfields = [\"tier\"]\n[grants.ticket]\nfields = [\"customer_id\"]\n";

/// Two ordinary tickets: the second shows the host moved on after the first.
pub fn two_tickets() -> Vec<Value> {
    vec![
        serde_json::json!({"id": "T-9001", "subject": "Charged twice", "body": "My card was charged twice for the same invoice, please refund.", "customer_id": "C-1007", "language": "en"}),
        serde_json::json!({"id": "T-9002", "subject": "Reset password", "body": "How do I reset my password? The link expired.", "customer_id": "C-1010", "language": "en"}),
    ]
}

/// The results by ticket id.
pub fn by_id(results: &[Value]) -> std::collections::BTreeMap<String, Value> {
    results
        .iter()
        .map(|r| (r["ticket_id"].as_str().unwrap_or("").to_string(), r.clone()))
        .collect()
}

/// Review reason codes of a result.
pub fn reasons(result: &Value) -> Vec<String> {
    result["gate"]["review"]["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces `from` with `to` in `path`; panics when `from` is not in it.
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap_or_else(|e| panic!("{e}"));
}
