//! The plugin manifest: the protocol's types, plus reading a manifest and confining the files
//! it names to its own directory (the file-system half, which the protocol leaves out).

pub use deskhost_protocol::manifest::*;
use std::path::{Path, PathBuf};

/// Reading a manifest and resolving the files it names.
pub trait ManifestFiles: Sized {
    /// Reads and checks the manifest at `path`.
    fn load(path: &Path) -> Result<Self, ManifestError>;

    /// Resolves the file named by `key` against the directory of `manifest_path`, refusing
    /// anything that is absolute, climbs with `..`, or (after symlinks) lands outside that
    /// directory. A file that does not exist resolves lexically (reading it then fails with
    /// its own error). `Ok(None)`: the manifest names no such file.
    fn resolve(&self, manifest_path: &Path, key: FileKey)
    -> Result<Option<PathBuf>, ManifestError>;
}

impl ManifestFiles for Manifest {
    fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    fn resolve(
        &self,
        manifest_path: &Path,
        key: FileKey,
    ) -> Result<Option<PathBuf>, ManifestError> {
        let Some(rel) = self.file(key) else {
            return Ok(None);
        };
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let escape = |problem: String| {
            ManifestError::PathEscape(Box::new(PathEscape {
                path: manifest_path.to_path_buf(),
                line: self.key_line(key),
                key: key.as_str(),
                value: deskhost_protocol::sanitize::field(&rel.to_string_lossy()).into_owned(),
                problem,
                dir: dir.to_path_buf(),
            }))
        };
        use std::path::Component;
        if rel.as_os_str().is_empty() {
            return Err(escape("is empty".into()));
        }
        for part in rel.components() {
            match part {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => return Err(escape("climbs out with \"..\"".into())),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(escape("is an absolute path".into()));
                }
            }
        }
        let joined = dir.join(rel);
        let Ok(real) = std::fs::canonicalize(&joined) else {
            // Missing (or a dangling link): nothing outside can be read through it.
            if std::fs::symlink_metadata(&joined).is_ok() {
                return Err(escape("is a symbolic link to nothing".into()));
            }
            return Ok(Some(joined));
        };
        let real_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !real.starts_with(&real_dir) {
            return Err(escape(format!(
                "resolves (through a symbolic link) to {}, outside the plugin directory",
                real.display()
            )));
        }
        Ok(Some(real))
    }
}
