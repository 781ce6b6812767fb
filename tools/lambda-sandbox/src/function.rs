//! A function binary started as Lambda starts it: a process of its own with
//! Lambda's environment (function name, memory, region, credentials, the
//! Runtime API's address, the bootstrap's variables) on top of the
//! function's own, and nothing of the caller's environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::runtime::{serve, Invoked, Sandbox, Served};
use crate::Error;

/// What to start, and with what.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The function's executable (its `bootstrap`), or the interpreter
    /// that runs it (with [`Launch::args`]).
    pub binary: PathBuf,
    /// Arguments to the executable: none for a bootstrap; an interpreter's
    /// own (`-m awslambdaric handler.lambda_handler`) otherwise.
    pub args: Vec<String>,
    /// `LAMBDA_TASK_ROOT` and the process's working directory; `None`: the
    /// executable's directory.
    pub task_root: Option<PathBuf>,
    /// `AWS_LAMBDA_FUNCTION_NAME`.
    pub name: String,
    /// The function's `Environment`; set after Lambda's own variables, so
    /// it may override any of them but the Runtime API's address.
    pub env: BTreeMap<String, String>,
    /// `AWS_ENDPOINT_URL`: where every AWS client sends its requests.
    pub aws_endpoint: String,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: u64,
    /// Where the process's stdout and stderr go; `None`: discarded.
    pub log: Option<PathBuf>,
    /// How long its init (spawn to the first `next`) may take.
    pub init_limit: Duration,
}

impl Launch {
    pub fn new(binary: impl Into<PathBuf>, name: &str, aws_endpoint: &str) -> Self {
        Self {
            binary: binary.into(),
            args: Vec::new(),
            task_root: None,
            name: name.to_owned(),
            env: BTreeMap::new(),
            aws_endpoint: aws_endpoint.to_owned(),
            memory_mb: 128,
            log: None,
            init_limit: Duration::from_secs(30),
        }
    }

    /// Adds variables to the function's environment.
    pub fn env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Runs `binary` with these arguments (an interpreter and its handler).
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Where the function's code is: its `LAMBDA_TASK_ROOT` and working
    /// directory, as in Lambda (an interpreter finds the handler there).
    pub fn task_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.task_root = Some(dir.into());
        self
    }

    pub fn memory_mb(mut self, memory_mb: u64) -> Self {
        self.memory_mb = memory_mb;
        self
    }

    pub fn log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    pub fn init_limit(mut self, limit: Duration) -> Self {
        self.init_limit = limit;
        self
    }

    /// Lambda's variables for this function (provided.al2023, us-east-1,
    /// dummy credentials: the endpoint is local).
    fn lambda_env(&self, runtime_api: &str) -> Vec<(&'static str, String)> {
        let task_root = self
            .task_root
            .as_deref()
            .or_else(|| self.binary.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        vec![
            ("AWS_LAMBDA_FUNCTION_NAME", self.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.name),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "lambda-sandbox".into()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
            ("_HANDLER", "bootstrap".into()),
            ("LAMBDA_TASK_ROOT", task_root.clone()),
            ("LAMBDA_RUNTIME_DIR", task_root),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "local".into()),
            ("AWS_SECRET_ACCESS_KEY", "local".into()),
            ("AWS_SESSION_TOKEN", "local".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL", self.aws_endpoint.clone()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
            ("LANG", "en_US.UTF-8".into()),
            ("TZ", ":UTC".into()),
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ]
    }

    /// Serves a Runtime API, spawns the binary against it, and waits for
    /// its init to end (its first `next`).
    pub async fn start(self) -> Result<Function, Error> {
        if !self.binary.is_file() {
            return Err(Error::Missing {
                binary: self.binary.clone(),
            });
        }
        let sandbox = Sandbox::new(&self.name);
        let served = serve(&sandbox).await?;
        let mut command = Command::new(&self.binary);
        command.args(&self.args).env_clear();
        if let Some(dir) = &self.task_root {
            command.current_dir(dir);
        }
        for (name, value) in self.lambda_env(&served.address) {
            command.env(name, value);
        }
        command
            .envs(&self.env)
            .env("AWS_LAMBDA_RUNTIME_API", &served.address)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.log {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let file = std::fs::File::create(path)?;
                command.stdout(file.try_clone()?).stderr(file);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        die_with_parent(&mut command);
        let spawned = Instant::now();
        let child = command.spawn().map_err(|source| Error::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let mut function = Function {
            name: self.name,
            child,
            pid,
            sandbox: Arc::clone(&sandbox),
            _served: served,
            log: self.log,
            spawned,
            initialized: spawned,
        };
        function.initialized = function
            .until_exit(sandbox.wait_init(self.init_limit))
            .await?;
        Ok(function)
    }
}

/// A function process in its sandbox; killed when dropped.
pub struct Function {
    name: String,
    child: Child,
    pid: u32,
    sandbox: Arc<Sandbox>,
    _served: Served,
    log: Option<PathBuf>,
    /// When the process was spawned.
    pub spawned: Instant,
    /// When its init ended (its first `next`).
    pub initialized: Instant,
}

impl Function {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Spawn to the end of init.
    pub fn init_duration(&self) -> Duration {
        self.initialized - self.spawned
    }

    /// Invokes the function with `event`, waiting at most `limit`.
    pub async fn invoke(&mut self, event: &Value, limit: Duration) -> Result<Invoked, Error> {
        let sandbox = Arc::clone(&self.sandbox);
        self.until_exit(sandbox.invoke(event, limit)).await
    }

    /// Invokes the function and parses its response as JSON.
    pub async fn invoke_json(&mut self, event: &Value, limit: Duration) -> Result<Value, Error> {
        let invoked = self.invoke(event, limit).await?;
        invoked.json(&self.name)
    }

    /// Stops the process and waits for it to be gone.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// `step`, unless the process exits first.
    async fn until_exit<T>(
        &mut self,
        step: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::select! {
            result = step => result,
            status = self.child.wait() => Err(Error::Exited {
                function: self.name.clone(),
                status: status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                log: self.log.as_ref().map_or_else(String::new, |l| format!("; its output is in {}", l.display())),
            }),
        }
    }
}

/// The process dies with its parent, even if the parent is killed (a test
/// binary or a bench stopped mid-run leaves no function, and no local
/// endpoint, behind).
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bootstrap that prints its environment and exits.
    fn env_printer(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        let script = dir.join("bootstrap");
        std::fs::write(&script, "#!/bin/sh\nenv\nexit 3\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[tokio::test]
    async fn the_process_gets_lambdas_environment_and_the_functions_and_nothing_of_ours() {
        let dir = std::env::temp_dir().join(format!("lambda-sandbox-env-{}", std::process::id()));
        let log = dir.join("out.log");
        let error = Launch::new(env_printer(&dir), "fn", "http://127.0.0.1:1")
            .env([
                ("AWS_REGION", "eu-west-1"),
                ("MAX_BODY_BYTES", "10"),
                ("AWS_LAMBDA_RUNTIME_API", "elsewhere:1"),
            ])
            .log(&log)
            .start()
            .await
            .err()
            .expect("the script exits without calling next");
        assert!(
            matches!(&error, Error::Exited { status, .. } if status.contains('3')),
            "{error}"
        );
        let printed = std::fs::read_to_string(&log).unwrap();
        let env: BTreeMap<&str, &str> = printed.lines().filter_map(|l| l.split_once('=')).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "fn");
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:1");
        assert_eq!(env["LAMBDA_TASK_ROOT"], dir.display().to_string());
        assert_eq!(
            env["AWS_REGION"], "eu-west-1",
            "the function's own setting wins"
        );
        assert_eq!(env["MAX_BODY_BYTES"], "10");
        assert!(
            env["AWS_LAMBDA_RUNTIME_API"].starts_with("127.0.0.1:"),
            "{printed}"
        );
        let launch = Launch::new("bootstrap", "fn", "");
        let set: Vec<&str> = launch.lambda_env("").iter().map(|(k, _)| *k).collect();
        // The shell sets these itself.
        let shell = ["PWD", "OLDPWD", "SHLVL", "_"];
        let ours = std::env::vars().map(|(k, _)| k);
        for ours in ours.filter(|k| !set.contains(&k.as_str()) && !shell.contains(&k.as_str())) {
            assert!(
                !env.contains_key(ours.as_str()),
                "{ours} leaked in: {printed}"
            );
        }
    }

    #[tokio::test]
    async fn an_interpreter_gets_its_arguments_and_runs_in_the_task_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lambda-sandbox-args-{}", std::process::id()));
        let root = dir.join("code");
        std::fs::create_dir_all(&root).unwrap();
        let interpreter = dir.join("interpreter");
        std::fs::write(
            &interpreter,
            "#!/bin/sh\necho \"args=$*\"\necho \"cwd=$(pwd)\"\necho \"root=$LAMBDA_TASK_ROOT\"\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&interpreter, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.join("out.log");
        let error = Launch::new(&interpreter, "fn", "http://127.0.0.1:1")
            .args(["-m", "awslambdaric", "handler.lambda_handler"])
            .task_root(&root)
            .log(&log)
            .start()
            .await
            .err()
            .expect("the script exits without calling next");
        assert!(matches!(error, Error::Exited { .. }), "{error}");
        let printed = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let root = root.display();
        assert_eq!(
            printed,
            format!("args=-m awslambdaric handler.lambda_handler\ncwd={root}\nroot={root}\n")
        );
    }

    #[tokio::test]
    async fn a_missing_binary_is_named() {
        let error = Launch::new("/nonexistent/bootstrap", "fn", "http://127.0.0.1:1")
            .start()
            .await
            .err()
            .expect("no binary, no function");
        assert!(
            error.to_string().contains("/nonexistent/bootstrap"),
            "{error}"
        );
    }
}
