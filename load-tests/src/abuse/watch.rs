//! Watching the stack's processes from `/proc`: still the same process (no restart), resident
//! and peak memory, open file descriptors (sockets included).

use std::path::PathBuf;

/// A process to watch, by name and pid.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for Watched {
    type Err = String;

    /// `NAME=PID`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, pid) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not NAME=PID"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("`{pid}` in `{text}` is not a process id"))?;
        Ok(Self {
            name: name.to_owned(),
            pid,
        })
    }
}

/// One look at a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub open_fds: u64,
}

impl Watched {
    /// `None` when the process is gone.
    pub fn sample(&self) -> Option<Sample> {
        let root = PathBuf::from(format!("/proc/{}", self.pid));
        let status = std::fs::read_to_string(root.join("status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        if status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("zombie"))
        {
            return None;
        }
        let open_fds = std::fs::read_dir(root.join("fd")).ok()?.count() as u64;
        Some(Sample {
            rss_kib: field("VmRSS:"),
            peak_rss_kib: field("VmHWM:"),
            open_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_processes_are_name_equals_pid_and_this_one_can_be_sampled() {
        let me: Watched = format!("self={}", std::process::id()).parse().unwrap();
        let sample = me.sample().expect("this process runs");
        assert!(sample.rss_kib > 0 && sample.peak_rss_kib >= sample.rss_kib);
        assert!(sample.open_fds >= 3);
        assert!("gateway".parse::<Watched>().is_err());
        assert!("gateway=x".parse::<Watched>().is_err());
    }
}
