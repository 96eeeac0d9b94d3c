//! The database under the store: SQLite (embedded, one file in the workspace) or PostgreSQL
//! (shared by many workers), reached through sqlx's `Any` driver so every query is written
//! once. What differs per backend lives here: connecting, migrations, the schema-version
//! check, and how a write transaction takes the lock that serialises writers.
//!
//! Queries use `$1`-style parameters, which both backends accept.

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file (WAL, synchronous=FULL).
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The backend of a pool opened by [`connect`].
    pub fn of(pool: &AnyPool) -> Backend {
        match pool.connect_options().database_url.scheme() {
            "postgres" | "postgresql" => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where a store lives, as the operator named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    File(std::path::PathBuf),
    /// A `postgres://` URL.
    Url(String),
}

impl Location {
    /// The backend this location selects.
    pub fn backend(&self) -> Backend {
        match self {
            Location::File(_) => Backend::Sqlite,
            Location::Url(_) => Backend::Postgres,
        }
    }
}

impl std::fmt::Display for Location {
    /// The path, or the URL with its password masked (safe to print and log).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Url(u) => f.write_str(&redact_url(u)),
        }
    }
}

/// `url` with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<a URL that does not parse>".to_string(),
    }
}

/// Why a database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not one this binary can use.
    #[error("store URL {url}: {detail}")]
    BadUrl {
        /// The URL, password masked.
        url: String,
        /// What is wrong and what to write instead.
        detail: String,
    },
    /// The database cannot be reached or opened.
    #[error("cannot open the store at {location}: {source}{hint}")]
    Open {
        /// Path or masked URL.
        location: String,
        /// Why.
        source: sqlx::Error,
        /// What to check.
        hint: &'static str,
    },
    /// The schema is behind this binary.
    #[error(
        "the store at {location} has schema version {found}; this deskhost needs {expected}. \
         Back it up, then run `deskhost db migrate` (in the workspace) to upgrade it"
    )]
    Outdated {
        /// Path or masked URL.
        location: String,
        /// Newest migration applied.
        found: i64,
        /// Newest migration this binary knows.
        expected: i64,
    },
    /// The schema was written by a newer binary.
    #[error(
        "the store at {location} has schema version {found}, newer than this deskhost \
         knows ({expected}); run the deskhost that migrated it (or a newer one)"
    )]
    TooNew {
        /// Path or masked URL.
        location: String,
        /// Newest migration applied.
        found: i64,
        /// Newest migration this binary knows.
        expected: i64,
    },
    /// Migrating failed.
    #[error("cannot migrate the store at {location}: {source}")]
    Migrate {
        /// Path or masked URL.
        location: String,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },
}

const TLS_HINT: &str = " (the TLS handshake failed: with sslmode=verify-ca or verify-full the \
     server's certificate must chain to a CA this machine trusts or to the one named by \
     sslrootcert=PATH in the URL, and verify-full also checks the host name)";

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

fn migrator(backend: Backend) -> &'static sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// The schema version this binary writes (its newest migration).
pub fn schema_version(backend: Backend) -> i64 {
    migrator(backend)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// What [`connect`] does with a schema that is behind the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migrations {
    /// A new (empty) database gets the schema; an older one is refused.
    CreateOnly,
    /// Apply whatever is missing (`deskhost db migrate`).
    Apply,
}

/// Opens a pool on `location` and checks (or creates, or upgrades) its schema.
pub async fn connect(
    location: &Location,
    max_connections: u32,
    migrations: Migrations,
) -> Result<AnyPool, DbError> {
    sqlx::any::install_default_drivers();
    let shown = location.to_string();
    let (url, hint) = match location {
        Location::File(path) => (sqlite_url(path)?, ""),
        Location::Url(url) => {
            let parsed = url::Url::parse(url).map_err(|e| DbError::BadUrl {
                url: shown.clone(),
                detail: format!("{e}; write postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
            })?;
            if !matches!(parsed.scheme(), "postgres" | "postgresql") {
                return Err(DbError::BadUrl {
                    url: shown,
                    detail: format!(
                        "scheme `{}` is not supported; use postgres://… (or leave [store] url \
                         unset for the workspace's SQLite file)",
                        parsed.scheme()
                    ),
                });
            }
            (
                url.clone(),
                " (check that PostgreSQL runs on that host and port, that the database \
                 exists, and the user and password; `pg_isready -h HOST -p PORT` tells)",
            )
        }
    };
    let options = AnyConnectOptions::from_str(&url).map_err(|e| DbError::BadUrl {
        url: shown.clone(),
        detail: e.to_string(),
    })?;
    let backend = location.backend();
    let pool = pool_options(backend, max_connections);
    let open_err = |source: sqlx::Error| DbError::Open {
        location: shown.clone(),
        hint: match &source {
            sqlx::Error::Tls(_) => TLS_HINT,
            // rustls' verdicts (UnknownIssuer, NotValidForName, …) arrive as I/O errors.
            sqlx::Error::Io(e) if e.to_string().contains("certificate") => TLS_HINT,
            _ => hint,
        },
        source,
    };
    // One attempt first: an unreachable server is named at once rather than after the
    // pool's retries run out.
    let probe = sqlx::AnyConnection::connect_with(&options)
        .await
        .map_err(open_err)?;
    probe.close().await.map_err(open_err)?;
    let pool = pool.connect_with(options).await.map_err(open_err)?;
    check_schema(&pool, backend, &shown, migrations).await?;
    Ok(pool)
}

fn pool_options(backend: Backend, max_connections: u32) -> AnyPoolOptions {
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(30));
    match backend {
        Backend::Postgres => pool,
        Backend::Sqlite => pool.after_connect(|conn, _| {
            Box::pin(async move {
                // WAL: readers never block the writer. FULL: a committed decision is on disk.
                conn.execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 10000;",
                )
                .await
                .map(|_| ())
            })
        }),
    }
}

/// Copies SQLite's write-ahead log into the database file on a reader connection, off the
/// writers' path.
///
/// Left to itself, SQLite checkpoints on the connection that commits once the log passes
/// 1,000 pages: the committer then waits for the copy and its fsync (~5 % of a `run`
/// profile). Writers ask for a checkpoint after they commit ([`WalCheckpoints::soon`]); at
/// most one runs at a time, at most one per [`WalCheckpoints::EVERY`]. A PASSIVE
/// checkpoint never blocks the writer and readers never block it for long; the writers'
/// own automatic checkpoint stays as a backstop at 10,000 pages (40 MB of log) should this
/// one fall behind.
#[derive(Debug, Default)]
pub struct WalCheckpoints {
    running: std::sync::atomic::AtomicBool,
    last_ms: std::sync::atomic::AtomicI64,
}

impl WalCheckpoints {
    /// The shortest time between two checkpoints.
    pub const EVERY: Duration = Duration::from_millis(200);

    /// Starts a checkpoint on `pool` unless one is running or ran within [`Self::EVERY`].
    pub fn soon(self: &std::sync::Arc<Self>, pool: &AnyPool) {
        use std::sync::atomic::Ordering;
        let now = crate::store::unix_ms();
        if now < self.last_ms.load(Ordering::Relaxed) + Self::EVERY.as_millis() as i64
            || self.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.last_ms.store(now, Ordering::Relaxed);
        let (pool, this) = (pool.clone(), self.clone());
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                // The writers' automatic checkpoint remains; nothing is lost.
                tracing::debug!(error = %e, "WAL checkpoint");
            }
            this.running.store(false, Ordering::Release);
        });
    }

    /// Whether a checkpoint is running now.
    pub fn running(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The pool this process's writes go through, beside `pool` (opened by [`connect`]).
///
/// SQLite has one write lock per database. Through one connection, this process's writers
/// (committer, ingest, claims, leases) queue in the pool and each is woken the moment the
/// writer is free; through many, they collide on the lock and wait in SQLite's busy
/// handler, which sleeps 1, 2, 5, … up to 100 ms between tries — tens of milliseconds of
/// latency for nothing. Other processes still meet the busy handler. PostgreSQL writers
/// share `pool` (row locks, no global write lock).
pub fn writer_pool(pool: &AnyPool) -> AnyPool {
    match Backend::of(pool) {
        Backend::Postgres => pool.clone(),
        Backend::Sqlite => pool_options(Backend::Sqlite, 1)
            // A local file's connection does not drop like a socket; testing it before each
            // write is a round trip to SQLite's thread for nothing.
            .test_before_acquire(false)
            .connect_lazy_with(pool.connect_options().as_ref().clone()),
    }
}

fn sqlite_url(path: &Path) -> Result<String, DbError> {
    let text = path.to_str().ok_or_else(|| DbError::BadUrl {
        url: path.display().to_string(),
        detail: "the path is not valid UTF-8; move the workspace to a UTF-8 path".into(),
    })?;
    // Percent-encode everything but path separators and plain characters, so `?`, `#` and
    // `%` in a directory name stay part of the file name.
    let mut url = String::from("sqlite://");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

async fn check_schema(
    pool: &AnyPool,
    backend: Backend,
    location: &str,
    migrations: Migrations,
) -> Result<(), DbError> {
    let expected = schema_version(backend);
    let query_err = |source| DbError::Open {
        location: location.to_string(),
        source,
        hint: "",
    };
    let exists_sql = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let exists: i64 = sqlx::query_scalar(exists_sql)
        .fetch_one(pool)
        .await
        .map_err(query_err)?;
    let found: i64 = if exists > 0 {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .map_err(query_err)?
    } else {
        0
    };
    if found > expected {
        return Err(DbError::TooNew {
            location: location.to_string(),
            found,
            expected,
        });
    }
    if found < expected && found > 0 && migrations == Migrations::CreateOnly {
        return Err(DbError::Outdated {
            location: location.to_string(),
            found,
            expected,
        });
    }
    if found < expected {
        migrator(backend)
            .run(pool)
            .await
            .map_err(|source| DbError::Migrate {
                location: location.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// Begins a transaction that writes: it holds the store's write lock from its first read to
/// its commit, so two writers (threads, processes, machines) never interleave, the audit
/// chain never forks, and read-then-write sequences see no concurrent change.
///
/// SQLite: `BEGIN IMMEDIATE` (the database's one write lock). PostgreSQL: a row lock on
/// `audit_head` (`SELECT … FOR UPDATE`), which every write also updates.
pub async fn begin_write(pool: &AnyPool) -> Result<Transaction<'static, Any>, sqlx::Error> {
    match Backend::of(pool) {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => {
            let mut tx = pool.begin().await?;
            lock_audit_head(&mut tx).await?;
            Ok(tx)
        }
    }
}

/// [`begin_write`] on a connection the caller holds (and hands back to its pool itself).
pub async fn begin_write_on(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Transaction<'_, Any>, sqlx::Error> {
    match backend {
        Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => {
            let mut tx = conn.begin().await?;
            lock_audit_head(&mut tx).await?;
            Ok(tx)
        }
    }
}

async fn lock_audit_head(tx: &mut Transaction<'_, Any>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        let shown = Location::Url("postgres://desk:s3cret@db.internal:5432/deskhost".into());
        assert_eq!(
            shown.to_string(),
            "postgres://desk:***@db.internal:5432/deskhost"
        );
    }

    #[test]
    fn odd_paths_stay_one_file_name() {
        let url = sqlite_url(Path::new("/tmp/a b?c#d%e/deskhost.db")).unwrap();
        assert_eq!(url, "sqlite:///tmp/a%20b%3Fc%23d%25e/deskhost.db?mode=rwc");
    }

    #[test]
    fn both_backends_reach_the_same_schema_version() {
        assert_eq!(
            schema_version(Backend::Sqlite),
            schema_version(Backend::Postgres)
        );
    }
}
