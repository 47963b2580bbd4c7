//! `dkc-local up`: writes the run's INI files from conf/, checks the kernel limits, starts the
//! server nodes, the slave chmpx and dkc-memcached in order, waits until a real memcached round
//! trip succeeds, prints the ready line and the status table, then supervises until Ctrl-C or
//! SIGTERM and stops everything in reverse order. It restarts nothing: a child that dies is
//! reported loudly, marked in the run file and shown by `dkc-local status`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::binaries::{self, Binaries};
use super::cli::UpArgs;
use super::config_gen::{self, Plan, Role};
use super::process::{self, Proc};
use super::runfile::{RunFile, RunProc};
use super::{join, ready};

/// Template of the servers' file inside --conf-dir.
pub const SERVER_TEMPLATE: &str = "local-3node.ini";
/// Template of the slave's file inside --conf-dir.
pub const SLAVE_TEMPLATE: &str = "local-slave.ini";
/// The generated files inside the data directory.
pub const SERVER_INI: &str = "server.ini";
pub const SLAVE_INI: &str = "slave.ini";
/// How often the supervisor and the readiness waits look again.
const POLL_MS: u64 = 100;
/// Bound on each stop stage before SIGKILL.
pub const STOP_WAIT_MS: u64 = 5000;
/// Log lines shown when a child dies.
const DEATH_LOG_LINES: usize = 15;

/// The signal that asked us to stop (0 = none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); the sigaction
        // struct is zeroed and then filled as the man page requires.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn stop_requested() -> bool {
    STOP_SIGNAL.load(Ordering::SeqCst) != 0
}

/// The running cluster: every child in start order, with its role.
struct Run {
    dir: PathBuf,
    run_file: RunFile,
    servers_chmpx: Vec<Proc>,
    servers_dkc: Vec<Proc>,
    slave: Option<Proc>,
    memcached: Option<Proc>,
    group: String,
}

impl Run {
    fn all(&mut self) -> impl Iterator<Item = &mut Proc> {
        self.servers_chmpx
            .iter_mut()
            .chain(self.servers_dkc.iter_mut())
            .chain(self.slave.iter_mut())
            .chain(self.memcached.iter_mut())
    }

    fn record(&mut self) {
        let procs: Vec<RunProc> = self
            .all()
            .map(|p| RunProc {
                pid: p.pid(),
                running: p.is_running(),
                name: p.name.clone(),
            })
            .collect();
        self.run_file.procs = procs;
        if let Err(e) = self.run_file.write(&self.dir) {
            eprintln!(
                "dkc-local: cannot write the run file in {}: {e}",
                self.dir.display()
            );
        }
    }

    /// Reports every child that died since the last look; true if any did.
    fn report_deaths(&mut self) -> bool {
        let mut any = false;
        for p in self.all() {
            if let Some(st) = p.newly_exited() {
                any = true;
                eprintln!(
                    "\ndkc-local: !!! {} (pid {}) EXITED: {} — it is NOT restarted.\n\
                     dkc-local: last lines of {}:\n{}\n",
                    p.name,
                    p.pid(),
                    process::describe(st),
                    p.log.display(),
                    p.log_tail(DEATH_LOG_LINES)
                );
            }
        }
        if any {
            self.record();
        }
        any
    }

    /// Stops everything in reverse start order: the front, the slave, the dkc-servers, the
    /// server chmpx processes. Each stage: SIGTERM, wait, SIGKILL.
    fn stop(&mut self) {
        let bound = Duration::from_millis(STOP_WAIT_MS);
        let mut killed = Vec::new();
        if let Some(m) = self.memcached.as_mut() {
            killed.extend(process::stop_group(&mut [m], bound));
        }
        if let Some(s) = self.slave.as_mut() {
            killed.extend(process::stop_group(&mut [s], bound));
        }
        killed.extend(process::stop_group(
            &mut self.servers_dkc.iter_mut().collect::<Vec<_>>(),
            bound,
        ));
        killed.extend(process::stop_group(
            &mut self.servers_chmpx.iter_mut().collect::<Vec<_>>(),
            bound,
        ));
        if !killed.is_empty() {
            eprintln!(
                "dkc-local: did not stop within {STOP_WAIT_MS} ms, killed: {}",
                killed.join(", ")
            );
        }
        remove_ipc_objects(&self.group);
        let _ = std::fs::remove_file(super::runfile::path(&self.dir));
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Only reached with children still running on an error path: never leave them behind.
        if self.all().any(|p| p.is_running()) {
            self.stop();
        }
    }
}

/// Removes the queues and shared-memory segments a killed chmpx of `group` left behind (they
/// count against the system-wide queues_max). Called only when no process of the group runs.
pub use chmpx::testkit::ipc::remove_ipc_objects;

/// Finds conf/: as given, else relative to the workspace when started through cargo.
fn conf_dir(given: &Path) -> anyhow::Result<PathBuf> {
    if given.join(SERVER_TEMPLATE).is_file() {
        return Ok(given.to_path_buf());
    }
    if given.is_relative() {
        if let Some(m) = std::env::var_os("CARGO_MANIFEST_DIR") {
            let alt = Path::new(&m).join("..").join(given);
            if alt.join(SERVER_TEMPLATE).is_file() {
                return Ok(alt);
            }
        }
    }
    bail!(
        "{} not found in {}; pass --conf-dir with the folder holding {SERVER_TEMPLATE} and {SLAVE_TEMPLATE}",
        SERVER_TEMPLATE,
        given.display()
    )
}

/// Runs `chmpx --conf FILE --check`; refuses to start when the file is bad or a kernel limit is
/// too low, printing chmpx's report.
/// With `ctlport`, also checks that node's saved ring state against the file.
fn check_config(bins: &Binaries, ini: &Path, ctlport: Option<u16>) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new(bins.path("chmpx"));
    cmd.arg("--conf").arg(ini).arg("--check");
    if let Some(c) = ctlport {
        cmd.arg("--ctlport").arg(c.to_string());
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", bins.path("chmpx").display()))?;
    let report = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("the config does not list it") {
            "dkc-local: the cluster in this directory had more server nodes than --nodes asks \
             for; run `up` with its --nodes, or use another --dir\n"
        } else {
            ""
        };
        bail!(
            "chmpx refused {}:\n{}{}{hint}",
            ini.display(),
            report,
            stderr
        );
    }
    if report.contains("NOT OK") || report.contains("TOO LOW") {
        bail!(
            "the kernel limits are too low for {} (chmpx --check):\n{report}",
            ini.display()
        );
    }
    Ok(())
}

fn ensure_ports_free(ports: &[u16]) -> anyhow::Result<()> {
    for &p in ports {
        if TcpListener::bind(("127.0.0.1", p)).is_err() {
            bail!(
                "port {p} on 127.0.0.1 is in use (another cluster or an earlier run?); \
                 stop it, or pick other ports with --base-port / --port"
            );
        }
    }
    Ok(())
}

/// Waits until `pred` holds, failing early if a child died or a stop was requested.
fn wait_for(
    run: &mut Run,
    what: &str,
    deadline: Instant,
    mut pred: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    loop {
        if pred() {
            return Ok(());
        }
        if run.report_deaths() {
            bail!("a process died while waiting for {what} (see above)");
        }
        if stop_requested() {
            bail!("stopped by a signal while waiting for {what}");
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out waiting for {what}; the logs are in {}",
                run.dir.join("logs").display()
            );
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

fn print_status(ctlport: u16) {
    match ready::status(ctlport) {
        Some(r) => print!("{}", chmpx::daemon::status::render_table(&r)),
        None => println!("(the slave chmpx on control port {ctlport} does not answer)"),
    }
    let _ = std::io::stdout().flush();
}

/// Renders `template` (read from `template_path`) for `role` and writes it to `out`.
fn write_rendered(
    template: &str,
    template_path: &Path,
    plan: &Plan,
    role: Role,
    out: &Path,
) -> anyhow::Result<()> {
    let text = config_gen::render(template, &template_path.display().to_string(), plan, role)?;
    std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))
}

/// `dkc-local up`.
pub fn up(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.resolve();
    if args.detach {
        return super::detach::up_detached(&dir);
    }
    install_signal_handlers();
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    if let Some(rf) = RunFile::read(&dir) {
        if rf.supervisor != 0
            && process::pid_alive(rf.supervisor)
            && rf.supervisor != std::process::id()
        {
            bail!(
                "a dkc-local (pid {}) already runs on {}; use `dkc-local status` or `dkc-local down --dir {}`",
                rf.supervisor,
                dir.display(),
                dir.display()
            );
        }
    }
    let conf = conf_dir(&args.conf_dir)?;
    let server_template_path = conf.join(SERVER_TEMPLATE);
    let slave_template_path = conf.join(SLAVE_TEMPLATE);
    let server_template = std::fs::read_to_string(&server_template_path)
        .with_context(|| format!("cannot read {}", server_template_path.display()))?;
    let slave_template = std::fs::read_to_string(&slave_template_path)
        .with_context(|| format!("cannot read {}", slave_template_path.display()))?;
    let base = match args.base_port {
        Some(b) => b,
        None => config_gen::template_value(&server_template, "SVRNODE", "PORT")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| config_gen::GenError::NoBasePort {
                file: server_template_path.display().to_string(),
            })?,
    };
    let group = match &args.group {
        Some(g) => g.clone(),
        None => config_gen::template_value(&server_template, "GLOBAL", "GROUP")
            .unwrap_or_else(|| "DKCLOCAL".into()),
    };
    let replica = match args.replica {
        Some(r) => r,
        None => config_gen::template_value(&server_template, "GLOBAL", "REPLICA")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    };
    if replica as usize >= args.nodes {
        eprintln!(
            "dkc-local: warning: REPLICA {replica} with {} nodes: each slot has only {} owners",
            args.nodes, args.nodes
        );
    }
    let plan = Plan::new(
        &group,
        replica,
        &dir.display().to_string(),
        args.nodes,
        base,
    )?;
    let server_ini = dir.join(SERVER_INI);
    let slave_ini = dir.join(SLAVE_INI);
    write_rendered(
        &server_template,
        &server_template_path,
        &plan,
        Role::Server,
        &server_ini,
    )?;
    write_rendered(
        &slave_template,
        &slave_template_path,
        &plan,
        Role::Slave,
        &slave_ini,
    )?;
    println!("data: {}", dir.display());
    println!(
        "config: {} and {} (from {} and {}; {} nodes, REPLICA {replica}, GROUP {group})",
        server_ini.display(),
        slave_ini.display(),
        server_template_path.display(),
        slave_template_path.display(),
        args.nodes
    );

    let bins = binaries::locate()?;
    check_config(&bins, &server_ini, None)?;
    check_config(&bins, &slave_ini, None)?;
    for n in &plan.nodes {
        check_config(&bins, &server_ini, Some(n.ctlport))?;
    }
    let new_nodes = join::new_nodes(&server_ini)?;
    let mut ports = plan.all_ports();
    if args.port != 0 {
        ports.push(args.port);
    }
    ensure_ports_free(&ports)?;
    // No chmpx of this group can run (its ports are free): whatever a killed one left is stale.
    remove_ipc_objects(&group);

    let mut run = Run {
        dir: dir.clone(),
        run_file: RunFile {
            supervisor: std::process::id(),
            group: group.clone(),
            slave_ctlport: plan.slave_ctlport,
            memcached: String::new(),
            procs: Vec::new(),
        },
        servers_chmpx: Vec::new(),
        servers_dkc: Vec::new(),
        slave: None,
        memcached: None,
        group: group.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout_secs);
    let log = |name: &str| dir.join("logs").join(format!("{name}.log"));
    // Every process kind started here (chmpx, dkc-server, dkc-memcached) takes these.
    let conf_args = |ini: &Path, ctlport: u16| {
        vec![
            "--conf".to_string(),
            ini.display().to_string(),
            "--ctlport".to_string(),
            ctlport.to_string(),
            "--attach-spin-us".to_string(),
            args.attach_spin_us.to_string(),
        ]
    };

    for n in &plan.nodes {
        let p = Proc::spawn(
            &format!("chmpx {}", n.ctlport),
            &bins.path("chmpx"),
            &conf_args(&server_ini, n.ctlport),
            &log(&format!("chmpx-{}", n.ctlport)),
            false,
        )?;
        println!("started {} (pid {})", p.name, p.pid());
        run.servers_chmpx.push(p);
    }
    for n in &plan.nodes {
        let ctl = n.ctlport;
        wait_for(
            &mut run,
            &format!("chmpx {ctl} to answer on its control port"),
            deadline,
            || ready::status(ctl).is_some(),
        )?;
        let p = Proc::spawn(
            &format!("dkc-server {ctl}"),
            &bins.path("dkc-server"),
            &conf_args(&server_ini, ctl),
            &log(&format!("dkc-server-{ctl}")),
            false,
        )?;
        println!("started {} (pid {})", p.name, p.pid());
        run.servers_dkc.push(p);
    }
    let slave = Proc::spawn(
        &format!("chmpx {} (slave)", plan.slave_ctlport),
        &bins.path("chmpx"),
        &conf_args(&slave_ini, plan.slave_ctlport),
        &log(&format!("chmpx-{}-slave", plan.slave_ctlport)),
        false,
    )?;
    println!("started {} (pid {})", slave.name, slave.pid());
    run.slave = Some(slave);
    run.record();
    let nodes = plan.nodes.len();
    let slave_ctl = plan.slave_ctlport;
    wait_for(
        &mut run,
        "every server node UP with its dkc-server attached and start-up merges done",
        deadline,
        || ready::status(slave_ctl).is_some_and(|r| ready::all_servers_serving(&r, nodes)),
    )?;
    for &ctl in &new_nodes {
        let answer = join::service_in(slave_ctl, ctl)?;
        println!(
            "node {} is new to this cluster: SERVICEIN ({answer}); its slots are copied to it",
            join::node_id(ctl)
        );
        wait_for(
            &mut run,
            &format!("node {} to join", join::node_id(ctl)),
            Instant::now() + Duration::from_secs(join::JOIN_MERGE_WAIT_SECS),
            || ready::status(slave_ctl).is_some_and(|r| join::joined(&r, ctl)),
        )?;
        println!("node {} joined", join::node_id(ctl));
    }

    let mut mc_args = conf_args(&slave_ini, slave_ctl);
    mc_args.extend([
        "--backend".to_string(),
        "cluster".to_string(),
        "--listen".to_string(),
        "127.0.0.1".to_string(),
        "--port".to_string(),
        args.port.to_string(),
        "--threads".to_string(),
        match args.front_threads {
            0 => super::cli::front_threads_auto(),
            n => n,
        }
        .to_string(),
    ]);
    let mc_log = log("dkc-memcached");
    let mut mc = Proc::spawn(
        "dkc-memcached",
        &bins.path("dkc-memcached"),
        &mc_args,
        &mc_log,
        true,
    )?;
    println!("started {} (pid {})", mc.name, mc.pid());
    let stdout = mc.take_stdout().context("dkc-memcached stdout")?;
    run.memcached = Some(mc);
    run.record();
    let addr = listening_addr(&mut run, stdout, &mc_log, deadline)?;
    let token = format!("{}-{}", std::process::id(), unix_millis());
    let mut last_err = String::new();
    let waited = wait_for(
        &mut run,
        &format!("a memcached round trip on {addr}"),
        deadline,
        || match ready::memcached_round_trip(addr, &token) {
            Ok(_) => true,
            Err(e) => {
                last_err = e;
                false
            }
        },
    );
    if let Err(e) = waited {
        bail!("{e} (last answer: {last_err})");
    }
    run.run_file.memcached = addr.to_string();
    run.record();
    println!("ready: memcached on {addr}");
    print_status(slave_ctl);
    println!(
        "dkc-local: Ctrl-C or SIGTERM stops every process above; the data stays in {}",
        dir.display()
    );

    // Supervise: report deaths, restart nothing.
    while !stop_requested() {
        if run.report_deaths() {
            print_status(slave_ctl);
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    let sig = STOP_SIGNAL.load(Ordering::SeqCst);
    println!("dkc-local: signal {sig}: stopping");
    run.stop();
    println!("stopped; data kept in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads dkc-memcached's "listening on ADDR" line (it picks the port when asked for 0), then
/// copies the rest of its stdout into its log.
fn listening_addr(
    run: &mut Run,
    stdout: std::process::ChildStdout,
    log: &Path,
    deadline: Instant,
) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let log = log.to_path_buf();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        let Ok(mut f) = std::fs::File::options().append(true).open(&log) else {
            return;
        };
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(f, "{line}");
        }
    });
    let mut got = None;
    wait_for(run, "dkc-memcached to print its address", deadline, || {
        if let Ok(l) = rx.try_recv() {
            got = Some(l);
        }
        got.is_some()
    })?;
    let line = got.unwrap_or_default();
    line.strip_prefix("listening on ")
        .and_then(|a| a.trim().parse().ok())
        .with_context(|| format!("dkc-memcached printed {line:?}, expected \"listening on ADDR\""))
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
