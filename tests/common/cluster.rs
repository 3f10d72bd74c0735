//! A real ClickHouse cluster for tests: one ZooKeeper 3.8 (Debian's
//! `zookeeper` package, run as a plain Java process) and four
//! `clickhouse-server` 18.16 processes on loopback ports forming 2 shards ×
//! 2 replicas (`internal_replication`), each with `{shard}` / `{replica}`
//! macros and a distributed DDL queue. Fresh ZooKeeper data per cluster, so
//! replicated tables never meet paths of an earlier run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokenbridge::ch::client::{ConnectOptions, Totals};
use tokenbridge::ch::managed::{ManagedError, ManagedOptions, ManagedServer};
use tokenbridge::ch::schema::{ClusterSpec, Topology};
use tokenbridge::ch::ChClient;
use tokenbridge::secret::Secret;

use super::free_port;

/// The cluster's name in every node's `remote_servers`.
pub const CLUSTER: &str = "tb-fleet";

/// A ZooKeeper server on its own port and data folder.
pub struct TestZooKeeper {
    child: Option<Child>,
    /// Client port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl TestZooKeeper {
    /// Starts ZooKeeper with data under `dir` and waits until it answers.
    pub fn start(dir: &Path) -> TestZooKeeper {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut zk = TestZooKeeper {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
        };
        zk.start_again();
        zk
    }

    /// Starts it (again) on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "zookeeper already running");
        std::fs::write(
            self.dir.join("zoo.cfg"),
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n",
                self.dir.join("data").display(),
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zookeeper.log"))
            .unwrap();
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xmx256m",
            "-cp",
            "/usr/share/java/*:/etc/zookeeper/conf_example",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        ])
        .arg(self.dir.join("zoo.cfg"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
        // SAFETY: prctl only marks this child; it dies with the test thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("java (zookeeper) not runnable"));
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.ruok() {
            assert!(
                Instant::now() < deadline,
                "zookeeper did not answer on {}:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.join("zookeeper.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether it answers `ruok` with `imok`.
    fn ruok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut out = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut out).is_ok() && out == "imok"
    }

    /// Stops it (SIGKILL: an outage, not a maintenance stop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestZooKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One node's ports.
#[derive(Debug, Clone, Copy)]
struct NodePorts {
    http: u16,
    tcp: u16,
    interserver: u16,
}

/// ZooKeeper and four ClickHouse nodes: nodes 0 and 1 are shard 1's
/// replicas, nodes 2 and 3 shard 2's.
pub struct TestCluster {
    /// The nodes, `None` while stopped.
    nodes: Vec<Option<ManagedServer>>,
    options: Vec<ManagedOptions>,
    /// ZooKeeper.
    pub zk: TestZooKeeper,
    /// Data of all of them.
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts ZooKeeper, then the four nodes together.
    ///
    /// Ports are chosen outside the ephemeral range (see [`free_port`]); if
    /// a node still finds one taken ("Address already in use", another
    /// process's server), all four start again on fresh ports, up to three
    /// times. Any other failure panics at once.
    pub fn start() -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let zk = TestZooKeeper::start(&dir.path().join("zk"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_nodes(dir.path(), zk.port) {
                Ok((nodes, options)) => {
                    return TestCluster {
                        nodes,
                        options,
                        zk,
                        dir,
                    }
                }
                Err(e) if attempt < 3 && e.to_string().contains("Address already in use") => {
                    eprintln!("cluster start attempt {attempt}: a port was taken, retrying: {e}");
                    for i in 0..4 {
                        let _ = std::fs::remove_dir_all(dir.path().join(format!("node{i}")));
                    }
                }
                Err(e) => panic!("cluster node did not answer: {e}"),
            }
        }
    }

    /// Writes four nodes' configs on fresh ports under `dir` and starts
    /// them; on an error every node started is stopped (dropped).
    fn start_nodes(
        dir: &Path,
        zk_port: u16,
    ) -> Result<(Vec<Option<ManagedServer>>, Vec<ManagedOptions>), ManagedError> {
        let ports: Vec<NodePorts> = (0..4)
            .map(|_| NodePorts {
                http: free_port(),
                tcp: free_port(),
                interserver: free_port(),
            })
            .collect();
        let options: Vec<ManagedOptions> = (0..4)
            .map(|i| {
                let node_dir = dir.join(format!("node{i}"));
                std::fs::create_dir_all(node_dir.join("config.d")).unwrap();
                std::fs::write(
                    node_dir.join("config.d/cluster.xml"),
                    node_config(i, &ports, zk_port),
                )
                .unwrap();
                ManagedOptions {
                    binary: PathBuf::from("/usr/sbin/clickhouse-server"),
                    dir: node_dir,
                    http_port: ports[i].http,
                    tcp_port: ports[i].tcp,
                    startup_timeout: Duration::from_secs(90),
                }
            })
            .collect();
        // Spawned from this thread (a server dies with the thread that
        // spawned it), all four before waiting for any.
        let mut nodes = Vec::with_capacity(4);
        for o in &options {
            nodes.push(Some(ManagedServer::spawn(o.clone())?));
        }
        for n in nodes.iter_mut().flatten() {
            n.wait_ready()?;
        }
        Ok((nodes, options))
    }

    /// HTTP URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.options[i].http_port)
    }

    /// The `[clickhouse]` lines of a daemon's config that talks to node `i`.
    pub fn config_lines(&self, i: usize, db: &str) -> String {
        format!(
            "mode = \"external\"\nurl = \"{}\"\ndatabase = \"{db}\"\ncluster = \"{CLUSTER}\"\n",
            self.url(i)
        )
    }

    /// A daemon config in `dir` that watches `watch` and talks to node `i`
    /// in cluster mode (`extra`: more sections).
    pub fn write_config(
        &self,
        dir: &Path,
        i: usize,
        db: &str,
        watch: &Path,
        extra: &str,
    ) -> PathBuf {
        let text = format!(
            "[watch]\ndirs = [{watch:?}]\nrescan_interval_ms = 2000\n\n[state]\ndir = {state:?}\n\n\
             [clickhouse]\n{ch}request_timeout_ms = 60000\n\n[log]\nlevel = \"debug\"\nformat = \"json\"\n\n\
             [http]\nlisten = \"127.0.0.1:0\"\n{extra}\n",
            watch = watch.display().to_string(),
            state = dir.join("state").display().to_string(),
            ch = self.config_lines(i, db),
        );
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Stops node `i` (SIGTERM, as an operator would).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.stop();
        }
    }

    /// Starts node `i` again on its ports and data.
    pub fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none());
        self.nodes[i] = Some(ManagedServer::start(self.options[i].clone()).unwrap());
    }

    /// A cluster-mode client through node `i` (schema ensured).
    pub fn client(&self, i: usize, db: &str) -> (tokio::runtime::Runtime, ChClient) {
        let (rt, c) = self.connect(i, db);
        rt.block_on(c.ensure_schema()).unwrap();
        (rt, c)
    }

    /// A cluster-mode client through node `i`, schema untouched.
    pub fn connect(&self, i: usize, db: &str) -> (tokio::runtime::Runtime, ChClient) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = rt
            .block_on(ChClient::connect(&ConnectOptions {
                url: self.url(i),
                database: db.to_string(),
                user: "default".into(),
                password: Secret::default(),
                request_timeout: Duration::from_secs(60),
                compress: false,
                send_basic: true,
                token: None,
                topology: Topology::Cluster(ClusterSpec {
                    name: CLUSTER.into(),
                    zookeeper_path: tokenbridge::ch::schema::DEFAULT_ZOOKEEPER_PATH.into(),
                }),
            }))
            .unwrap();
        (rt, c)
    }

    /// Deduplicated totals through node `i`'s Distributed table.
    pub fn totals(&self, i: usize, db: &str) -> Totals {
        let (rt, c) = self.client(i, db);
        rt.block_on(c.totals()).unwrap()
    }

    /// Rows of `sql` (one `String` key and five `u64`s) through node `i`.
    pub fn rows(&self, i: usize, db: &str, sql: &str) -> Vec<(String, u64, u64, u64, u64, u64)> {
        let (rt, c) = self.client(i, db);
        rt.block_on(c.raw().query(sql).fetch_all()).unwrap()
    }

    /// One `u64` of `sql` through node `i`.
    pub fn count(&self, i: usize, db: &str, sql: &str) -> u64 {
        let (rt, c) = self.client(i, db);
        rt.block_on(c.raw().query(sql).fetch_one::<u64>()).unwrap()
    }

    /// Waits until node `i` has fetched every part its shard's log holds
    /// for `table` (`SYSTEM SYNC REPLICA`).
    pub fn sync_replica(&self, i: usize, db: &str, table: &str) {
        let (rt, c) = self.client(i, db);
        rt.block_on(c.execute(&format!("SYSTEM SYNC REPLICA {db}.{table}")))
            .unwrap();
    }

    /// Per node: raw rows, rows after `FINAL` and their token sum, of
    /// `messages_local`: a shard's two replicas must agree on all three.
    pub fn replica_states(&self, db: &str) -> Vec<(u64, u64, u64)> {
        (0..4)
            .map(|i| {
                let (rt, c) = self.client(i, db);
                let raw: u64 = rt
                    .block_on(
                        c.raw()
                            .query(&format!("SELECT count() FROM {db}.messages_local"))
                            .fetch_one(),
                    )
                    .unwrap();
                let (n, tokens): (u64, u64) = rt
                    .block_on(
                        c.raw()
                            .query(&format!(
                                "SELECT count(), sum(input_tokens + output_tokens + cache_creation_input_tokens \
                                 + cache_read_input_tokens) FROM {db}.messages_local FINAL"
                            ))
                            .fetch_one(),
                    )
                    .unwrap();
                (raw, n, tokens)
            })
            .collect()
    }
}

/// `config.d/cluster.xml` of node `i`: ZooKeeper, macros, the DDL queue and
/// the cluster of all four nodes.
fn node_config(i: usize, ports: &[NodePorts], zk_port: u16) -> String {
    let replica = |n: usize| {
        format!(
            "<replica><host>127.0.0.1</host><port>{}</port></replica>",
            ports[n].tcp
        )
    };
    let shard = |a: usize, b: usize| {
        format!(
            "<shard><internal_replication>true</internal_replication>{}{}</shard>",
            replica(a),
            replica(b)
        )
    };
    format!(
        r#"<?xml version="1.0"?>
<yandex>
    <interserver_http_port>{interserver}</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <zookeeper>
        <node><host>127.0.0.1</host><port>{zk_port}</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
    </zookeeper>
    <macros><shard>0{shard_no}</shard><replica>node{i}</replica></macros>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <remote_servers><{CLUSTER}>{s1}{s2}</{CLUSTER}></remote_servers>
</yandex>
"#,
        interserver = ports[i].interserver,
        shard_no = i / 2 + 1,
        s1 = shard(0, 1),
        s2 = shard(2, 3),
    )
}
