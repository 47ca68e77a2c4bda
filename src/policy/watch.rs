//! Reload on file-system events, debounced into one call per burst (SIGHUP: `server::on_sighup`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// However busy the directory, a reload happens at least this often during a long burst.
const MAX_DELAY_FACTOR: u32 = 10;

/// What to watch: a directory tree, or the entries of one directory.
#[derive(Debug, Clone)]
pub struct WatchedPath {
    pub path: PathBuf,
    pub recursive: bool,
}

impl WatchedPath {
    /// Whether changes in directory `dir` reach this watch.
    pub fn covers(&self, dir: &Path) -> bool {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let (dir, path) = (absolute(dir), absolute(&self.path));
        if self.recursive { dir.starts_with(&path) } else { dir == path }
    }
}

/// Keeps a watch running; dropping it stops the watch.
pub struct Watch {
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Calls `on_change` on a blocking thread once each burst of relevant events settles for `quiet`.
/// `relevant` sees each event's paths. Watches are re-established after every burst, so a watched
/// directory that was deleted and created again is followed. Needs a Tokio runtime.
pub fn watch(
    name: &'static str,
    paths: Vec<WatchedPath>,
    quiet: Duration,
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    on_change: impl Fn() + Send + Sync + 'static,
) -> notify::Result<Watch> {
    let (sender, mut events) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        // Reading files (our own reloads included) must not trigger reloads.
        Ok(event) if matches!(event.kind, EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))) => {}
        Ok(event) if event.paths.iter().any(|p| relevant(p)) => {
            let _ = sender.try_send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(watch = name, error = %e, "file watch error"),
    })?;
    for watched in &paths {
        watcher.watch(&watched.path, mode(watched))?;
    }
    let on_change = Arc::new(on_change);
    let task = tokio::spawn(async move {
        while events.recv().await.is_some() {
            let burst = Instant::now();
            // Debounce: wait until no event came for `quiet`, but not forever.
            while burst.elapsed() < quiet * MAX_DELAY_FACTOR {
                match tokio::time::timeout(quiet, events.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            for watched in &paths {
                let _ = watcher.unwatch(&watched.path);
                if let Err(e) = watcher.watch(&watched.path, mode(watched)) {
                    tracing::warn!(watch = name, path = %watched.path.display(), error = %e, "cannot watch");
                }
            }
            let on_change = Arc::clone(&on_change);
            if tokio::task::spawn_blocking(move || on_change()).await.is_err() {
                tracing::error!(watch = name, "reload task panicked");
            }
        }
    });
    Ok(Watch { task })
}

fn mode(watched: &WatchedPath) -> RecursiveMode {
    if watched.recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive }
}
