//! A private PostgreSQL server for tests: `initdb` into a temporary directory, `postgres` on
//! 127.0.0.1 and a free port, password authentication with a generated password, one fresh
//! database per caller. No system service is touched; as root (CI) the server runs as the
//! `postgres` user. A watchdog stops the server and removes its directory when the test
//! process ends, however it ends.
//!
//! Used by the store conformance suite (`host/store/tests/conformance.rs`) and by the end-to-end suite
//! when `DESKHOST_TEST_BACKEND=postgres`. Where PostgreSQL is not installed, [`shared`]
//! returns `None` (tests print why and skip) unless `DESKHOST_REQUIRE_POSTGRES=1`, as
//! `tests/run.sh` sets after installing it.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running server.
pub struct PgServer {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// With TLS ([`PgServer::start_tls`]): the CA certificate that signed the server's.
    pub ca: Option<PathBuf>,
    password: String,
    bin: PathBuf,
    data: PathBuf,
    owner: Option<(u32, u32)>,
}

static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The server shared by this test process, started on first use; `None` (with the reason
/// printed) when PostgreSQL is not installed and not required.
pub fn shared() -> Option<&'static PgServer> {
    SERVER
        .get_or_init(|| match PgServer::start() {
            Ok(server) => Some(server),
            Err(why) => {
                if std::env::var("DESKHOST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!("PostgreSQL is required (DESKHOST_REQUIRE_POSTGRES=1) but: {why}");
                }
                eprintln!(
                    "SKIPPED: PostgreSQL tests: {why} (install Debian's `postgresql`; tests/run.sh does)"
                );
                None
            }
        })
        .as_ref()
}

/// The directory with `initdb`, `postgres` and `pg_isready`: `DESKHOST_PG_BIN`, else the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("DESKHOST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin/initdb".to_string())
}

fn ids_of(user: &str) -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .map_err(|e| format!("id {flag} {user}: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("no user `{user}` to run PostgreSQL as (root may not)"))
    };
    Ok((id("-u")?, id("-g")?))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl PgServer {
    /// initdb + postgres on a free port, ready to accept connections.
    pub fn start() -> Result<PgServer, String> {
        Self::start_with(false)
    }

    /// As [`PgServer::start`], and TLS on: a test CA (made with `openssl`, which Debian's
    /// `postgresql` brings through `ssl-cert`) signs a certificate for 127.0.0.1; the CA's
    /// file is in [`PgServer::ca`]. Plain connections are still accepted.
    pub fn start_tls() -> Result<PgServer, String> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<PgServer, String> {
        let bin = bin_dir()?;
        let owner = if is_root() {
            Some(ids_of("postgres")?)
        } else {
            None
        };
        let root = std::env::temp_dir().join(format!(
            "deskhost-pg-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(rand_u32())
        ));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", root.display()))?;
        }
        let data = root.join("data");
        let password = format!("{:08x}{:08x}{:08x}", rand_u32(), rand_u32(), rand_u32());
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, &password).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()));
        run_as(&mut initdb, owner);
        let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let _ = std::fs::remove_file(&pwfile);
        let ca = if tls {
            Some(make_certificates(&root, owner)?)
        } else {
            None
        };
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let mut postgres = Command::new(bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", root.display()))
                .args(["-c", "max_connections=200", "-c", "shared_buffers=64MB"])
                .args(if tls {
                    vec![
                        "-c".to_string(),
                        "ssl=on".to_string(),
                        "-c".to_string(),
                        format!("ssl_cert_file={}", root.join("server.pem").display()),
                        "-c".to_string(),
                        format!("ssl_key_file={}", root.join("server.key").display()),
                    ]
                } else {
                    Vec::new()
                })
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(root.join("server.log")).map_err(|e| e.to_string())?,
                ));
            run_as(&mut postgres, owner);
            let child = postgres.spawn().map_err(|e| format!("postgres: {e}"))?;
            watchdog(child.id(), &root);
            let server = PgServer {
                port,
                ca: ca.clone(),
                password: password.clone(),
                bin: bin.clone(),
                data: data.clone(),
                owner,
            };
            if server.wait_ready(Duration::from_secs(30)) {
                return Ok(server);
            }
            last = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!("postgres did not start: {last}"))
    }

    fn wait_ready(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The superuser URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// A new, empty database; returns its URL.
    pub fn database(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .env("PGPASSWORD", &self.password)
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        assert!(
            out.status.success(),
            "CREATE DATABASE {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }
}

/// A CA and a server certificate for IP 127.0.0.1 signed by it, in `root`; returns the CA's
/// file. The server key is the server user's, mode 600 (PostgreSQL insists).
fn make_certificates(root: &Path, owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let openssl = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(root)
            .output()
            .map_err(|e| format!("openssl (needed for the TLS test): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=deskhost test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca)?;
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr)?;
    std::fs::write(
        root.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    let key = root.join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = owner {
        for f in ["server.key", "server.pem"] {
            std::os::unix::fs::chown(root.join(f), Some(uid), Some(gid))
                .map_err(|e| format!("chown {f}: {e}"))?;
        }
    }
    Ok(root.join("ca.pem"))
}

fn run_as(command: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
}

/// Stops the server (SIGINT: fast shutdown) and removes its directory once this process is
/// gone — also after a panic or a SIGKILL of the test binary.
fn watchdog(server: u32, root: &Path) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; \
         kill -INT {server} 2>/dev/null; \
         for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 {server} 2>/dev/null || break; sleep 0.5; done; \
         kill -KILL {server} 2>/dev/null; rm -rf '{root}'",
        parent = std::process::id(),
        root = root.display(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u32::from_le_bytes(b)
}
