//! A 3-node JetStream cluster for tests, run from the shipped `nats/config/cluster-node*.conf`:
//! users per role and mutual TLS on client connections and routes, as production runs it. Each
//! node gets free ports (given on the command line, over the config's) and its own temporary
//! store (the config's relative `store_dir`, under the node's working directory). Nodes can be
//! killed (SIGKILL) and restarted on the same ports and store; all are killed on drop.

use super::security::{workspace, Role, Security};
use super::{free_port, nats_server_binary, server_log, wait_for_port};
use crate::client_args::NatsArgs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Nodes in the cluster (the shipped configs name three).
pub const NODES: usize = 3;

struct Node {
    child: Option<Child>,
    port: u16,
    route_port: u16,
    monitor_port: u16,
    store: tempfile::TempDir,
}

pub struct NatsCluster {
    nodes: Vec<Node>,
    security: Security,
}

impl NatsCluster {
    /// Starts the three nodes and waits until each accepts connections (JetStream elects its
    /// meta leader a moment later: clients retry their first calls).
    pub fn start() -> Self {
        let nodes = (0..NODES)
            .map(|_| Node {
                child: None,
                port: free_port(),
                route_port: free_port(),
                monitor_port: free_port(),
                store: tempfile::tempdir().expect("temporary store directory"),
            })
            .collect();
        let mut cluster = Self {
            nodes,
            security: Security::new(),
        };
        for index in 0..NODES {
            cluster.spawn(index);
        }
        cluster
    }

    /// The seed list of every node: `tls://127.0.0.1:<port>,...`.
    pub fn url(&self) -> String {
        self.url_of(|_| true)
    }

    /// The seed list of every node but `index`.
    pub fn url_without(&self, index: usize) -> String {
        self.url_of(|i| i != index)
    }

    fn url_of(&self, chosen: impl Fn(usize) -> bool) -> String {
        let urls: Vec<String> = (0..NODES)
            .filter(|&i| chosen(i))
            .map(|i| format!("tls://127.0.0.1:{}", self.nodes[i].port))
            .collect();
        urls.join(",")
    }

    /// The flags (besides `--nats-url`) a service of `role` connects with.
    pub fn client_flags(&self, role: Role) -> Vec<String> {
        self.security.client_flags(role)
    }

    /// The connection args of `role`, with the whole seed list.
    pub fn client_args(&self, role: Role) -> NatsArgs {
        self.security.client_args(role, &self.url())
    }

    /// Node `index`'s monitoring endpoint, `http://127.0.0.1:<port>` (`/connz`, `/jsz`...).
    pub fn monitor_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[index].monitor_port)
    }

    /// The node whose `server_name` (`coder-nats-N`) is `name`.
    pub fn index_of(name: &str) -> Option<usize> {
        let index: usize = name.strip_prefix("coder-nats-")?.parse().ok()?;
        (index < NODES).then_some(index)
    }

    /// SIGKILLs node `index`, keeping its store.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `index` again on its ports and store.
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index);
    }

    fn spawn(&mut self, index: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("nats-route://127.0.0.1:{}", node.route_port))
            .collect();
        let node = &self.nodes[index];
        let config = workspace().join(format!("nats/config/cluster-node{index}.conf"));
        let child = Command::new(nats_server_binary())
            .current_dir(node.store.path())
            .arg("-c")
            .arg(config)
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-m", &node.monitor_port.to_string(), "--cluster"])
            .arg(format!("nats://127.0.0.1:{}", node.route_port))
            .arg("--routes")
            .arg(routes.join(","))
            .envs(self.security.server_env())
            .stdout(Stdio::null())
            .stderr(server_log())
            .spawn()
            .expect("nats-server starts (install it with scripts/setup.sh)");
        let port = node.port;
        self.nodes[index].child = Some(child);
        wait_for_port(port, Duration::from_secs(10));
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..NODES {
            self.kill(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_named_as_the_configs_name_them() {
        assert_eq!(NatsCluster::index_of("coder-nats-2"), Some(2));
        assert_eq!(NatsCluster::index_of("coder-nats-3"), None);
        assert_eq!(NatsCluster::index_of("other-1"), None);
    }
}
