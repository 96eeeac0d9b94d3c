//! A private Request Tracker 5 for tests: Debian's `request-tracker5` with `rt5-db-sqlite`,
//! its own SQLite database and configuration in a temporary directory
//! (`RT_SITE_CONFIG_DIR`), `rt-server` on 127.0.0.1 and a free port, the `root` password
//! replaced by a generated one, and the custom fields deskhost writes (`category`,
//! `language`, `sentiment`, `confidence`, multi-value `tags`; the transaction field
//! `deskhost-outbox`) created and
//! applied to every queue. A watchdog stops the server (its whole process group) and
//! removes the directory when the test process ends.
//!
//! Where RT is not installed, [`shared`] returns `None` (tests print why and skip) unless
//! `DESKHOST_REQUIRE_RT=1`, as `tests/run.sh` sets after installing it.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/share/request-tracker5/libexec/rt-server";
const SETUP: &str = "/usr/sbin/rt-setup-database-5";
const LIB: &str = "/usr/share/request-tracker5/lib";

/// A running RT.
pub struct RtServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin user (`root`).
    pub user: String,
    /// Its generated password.
    pub password: String,
    root: PathBuf,
}

static RT: OnceLock<Option<RtServer>> = OnceLock::new();

/// The RT shared by this test process, started on first use (about 15 s); `None` (with the
/// reason printed) when RT is not installed and not required.
pub fn shared() -> Option<&'static RtServer> {
    RT.get_or_init(|| match RtServer::start() {
        Ok(server) => Some(server),
        Err(why) => {
            if std::env::var("DESKHOST_REQUIRE_RT").as_deref() == Ok("1") {
                panic!("Request Tracker is required (DESKHOST_REQUIRE_RT=1) but: {why}");
            }
            eprintln!(
                "SKIPPED: Request Tracker tests: {why} (install Debian's `request-tracker5` and `rt5-db-sqlite`; tests/run.sh does)"
            );
            None
        }
    })
    .as_ref()
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl RtServer {
    fn start() -> Result<Self, String> {
        for bin in [SERVER, SETUP] {
            if !Path::new(bin).exists() {
                return Err(format!("{bin} is missing"));
            }
        }
        let root = std::env::temp_dir().join(format!(
            "deskhost-rt-{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        let conf = root.join("conf");
        std::fs::create_dir_all(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let site = format!(
            "Set($rtname, 'deskhost-test');\n\
             Set($Organization, 'deskhost-test');\n\
             Set($Timezone, 'UTC');\n\
             Set($DatabaseType, 'SQLite');\n\
             Set($DatabaseName, '{db}');\n\
             Set($WebPath, '');\n\
             Set($WebDomain, '127.0.0.1');\n\
             Set($WebPort, {port});\n\
             Set($WebBaseURL, '{url}');\n\
             Set($LogToSTDERR, 'warning');\n\
             Set($LogToSyslog, undef);\n\
             Set($LogToFile, undef);\n\
             Set($LogDir, '{root}');\n\
             Set($MailCommand, 'mbox');\n\
             1;\n",
            db = root.join("rt.db").display(),
            root = root.display(),
        );
        let site_file = conf.join("site.pm");
        std::fs::write(&site_file, site).map_err(|e| e.to_string())?;
        let env = |c: &mut Command| {
            c.env("RT_SITE_CONFIG_DIR", &conf)
                .env("RT_SITE_CONFIG", &site_file);
        };
        let run = |c: &mut Command, what: &str| -> Result<(), String> {
            env(c);
            let out = c.output().map_err(|e| format!("{what}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{what} failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        run(
            Command::new(SETUP).args(["--action", "init", "--skip-create"]),
            "rt-setup-database",
        )?;
        let password = random_hex(12);
        let setup = root.join("setup.pl");
        std::fs::write(&setup, SETUP_PERL).map_err(|e| e.to_string())?;
        run(
            Command::new("perl")
                .arg(format!("-I{LIB}"))
                .arg(&setup)
                .arg(&password),
            "RT custom fields and password",
        )?;
        let log = std::fs::File::create(root.join("server.log")).map_err(|e| e.to_string())?;
        let mut server = Command::new(SERVER);
        env(&mut server);
        let child = server
            .args(["--port", &port.to_string()])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{SERVER}: {e}"))?;
        watchdog(child.id(), &root);
        let server = RtServer {
            url,
            user: "root".into(),
            password,
            root,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let up = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u"])
                .arg(format!("{}:{}", server.user, server.password))
                .arg(format!("{}/REST/2.0/rt", server.url))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if up == "200" {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(format!(
            "rt-server did not answer within 60 s: {}",
            std::fs::read_to_string(server.root.join("server.log")).unwrap_or_default()
        ))
    }

    /// The REST2 base.
    pub fn api(&self) -> String {
        format!("{}/REST/2.0", self.url)
    }
}

/// Creates the custom fields deskhost writes and applies them to every queue; replaces
/// root's default password with the one given.
const SETUP_PERL: &str = r#"
use strict; use warnings;
use RT; RT::LoadConfig(); RT::Init();
my $password = shift @ARGV;
my @fields = (
    ['category', 'RT::Queue-RT::Ticket', 1],
    ['language', 'RT::Queue-RT::Ticket', 1],
    ['sentiment', 'RT::Queue-RT::Ticket', 1],
    ['confidence', 'RT::Queue-RT::Ticket', 1],
    ['tags', 'RT::Queue-RT::Ticket', 0],
    ['deskhost-outbox', 'RT::Queue-RT::Ticket-RT::Transaction', 1],
);
for my $f (@fields) {
    my ($name, $lookup, $max) = @$f;
    my $cf = RT::CustomField->new(RT->SystemUser);
    my ($ok, $msg) = $cf->Create(Name => $name, Type => 'Freeform', MaxValues => $max, LookupType => $lookup);
    die "custom field $name: $msg" unless $ok;
    ($ok, $msg) = $cf->AddToObject(RT::Queue->new(RT->SystemUser));
    die "apply $name: $msg" unless $ok;
}
my $root = RT::User->new(RT->SystemUser);
$root->Load('root');
my ($ok, $msg) = $root->SetPassword($password);
die "password: $msg" unless $ok;
"#;

fn watchdog(server: u32, root: &Path) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; \
         kill -TERM -{server} 2>/dev/null; sleep 1; kill -KILL -{server} 2>/dev/null; \
         rm -rf '{root}'",
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
