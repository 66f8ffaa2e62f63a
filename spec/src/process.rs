//! The process: args, environment, working directory, and the exec process.

use k8s_cri::v1::ContainerConfig;
use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{Process, Spec};

use crate::error::SpecError;

/// containerd's default PATH.
pub(crate) const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process args (containerd's, from moby's rules):
/// - CRI command empty: command = image Entrypoint (except `[""]`), and
///   args = CRI args, or the image Cmd when those are empty too;
/// - CRI command set: command + CRI args (image Entrypoint and Cmd ignored);
/// - nothing at all: error.
pub(crate) fn args(
    config: &ContainerConfig,
    image: Option<&ImageConfig>,
) -> Result<Vec<String>, SpecError> {
    let mut command = config.command.clone();
    let mut args = config.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.and_then(|i| i.cmd().clone()).unwrap_or_default();
        }
        let entrypoint = image
            .and_then(|i| i.entrypoint().clone())
            .unwrap_or_default();
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    if command.is_empty() && args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    command.extend(args);
    Ok(command)
}

/// Replaces entries of `base` with `overrides` by key, appending new keys; an
/// override without `=` unsets the key (containerd's replaceOrAppendEnvValues).
pub(crate) fn replace_or_append_env(base: &mut Vec<String>, overrides: &[String]) {
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    for o in overrides {
        if !o.contains('=') {
            base.retain(|e| key(e) != *o);
            continue;
        }
        let k = key(o);
        match base.iter_mut().find(|e| key(e) == k) {
            Some(slot) => *slot = o.clone(),
            None => base.push(o.clone()),
        }
    }
}

/// The environment, built in containerd's order: the default PATH, `TERM=xterm`
/// with a tty, `HOSTNAME=<pod hostname>`, then the image Env, then the CRI envs,
/// each replacing earlier entries of the same key.
pub(crate) fn env(
    config: &ContainerConfig,
    image: Option<&ImageConfig>,
    hostname: &str,
) -> Vec<String> {
    let mut env = vec![DEFAULT_PATH_ENV.to_string()];
    if config.tty {
        env.push("TERM=xterm".into());
    }
    replace_or_append_env(&mut env, &[format!("HOSTNAME={hostname}")]);
    let mut overrides: Vec<String> = image.and_then(|i| i.env().clone()).unwrap_or_default();
    overrides.extend(
        config
            .envs
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value)),
    );
    replace_or_append_env(&mut env, &overrides);
    env
}

/// The working directory: CRI working_dir, else the image WorkingDir, else "/".
pub(crate) fn cwd(
    config: &ContainerConfig,
    image: Option<&ImageConfig>,
) -> Result<String, SpecError> {
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else {
        image
            .and_then(|i| i.working_dir().clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    if !cwd.starts_with('/') {
        return Err(SpecError::InvalidWorkingDir(cwd));
    }
    Ok(cwd)
}

/// The process `ExecSync`/`Exec` runs in a container created from `base`:
/// the container's process (user, env, cwd, capabilities, no_new_privileges,
/// AppArmor, SELinux label, rlimits, oom_score_adj) with `cmd` as args and
/// no terminal.
pub fn process_for_exec(base: &Spec, cmd: &[String]) -> Result<Process, SpecError> {
    if cmd.is_empty() {
        return Err(SpecError::NoExecCommand);
    }
    let mut p = base.process().clone().unwrap_or_default();
    p.set_args(Some(cmd.to_vec()));
    p.set_terminal(Some(false));
    p.set_console_size(None);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::KeyValue;
    use oci_spec::image::ConfigBuilder;
    use oci_spec::runtime::{ProcessBuilder, SpecBuilder, UserBuilder};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let mut b = ConfigBuilder::default();
        if let Some(e) = entrypoint {
            b = b.entrypoint(s(e));
        }
        if let Some(c) = cmd {
            b = b.cmd(s(c));
        }
        b.build().unwrap()
    }

    fn cfg(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            command: s(command),
            args: s(args),
            ..Default::default()
        }
    }

    #[test]
    fn arg_merging_table() {
        let ep: &[&str] = &["/entry", "-x"];
        let cmd: &[&str] = &["serve", "--port=80"];
        #[allow(clippy::type_complexity)]
        let table: &[(&[&str], &[&str], Option<&[&str]>, Option<&[&str]>, &[&str])] = &[
            // CRI command, CRI args, image entrypoint, image cmd => process args
            (
                &[],
                &[],
                Some(ep),
                Some(cmd),
                &["/entry", "-x", "serve", "--port=80"],
            ),
            (&[], &["a1"], Some(ep), Some(cmd), &["/entry", "-x", "a1"]),
            (&["/c"], &[], Some(ep), Some(cmd), &["/c"]),
            (
                &["/c"],
                &["a1", "a2"],
                Some(ep),
                Some(cmd),
                &["/c", "a1", "a2"],
            ),
            (&[], &[], None, Some(cmd), &["serve", "--port=80"]),
            (&[], &["a1"], None, Some(cmd), &["a1"]),
            (&[], &[], Some(ep), None, &["/entry", "-x"]),
            // An entrypoint of [""] means "no entrypoint".
            (&[], &[], Some(&[""]), Some(cmd), &["serve", "--port=80"]),
            (&["/c"], &[], None, None, &["/c"]),
            (&[], &["/bin/sh"], None, None, &["/bin/sh"]),
        ];
        for (command, args_, e, c, want) in table {
            let img = image(*e, *c);
            let got = args(&cfg(command, args_), Some(&img)).unwrap();
            assert_eq!(
                got,
                s(want),
                "command={command:?} args={args_:?} ep={e:?} cmd={c:?}"
            );
        }
    }

    #[test]
    fn no_command_is_invalid_argument() {
        let e = args(&cfg(&[], &[]), Some(&image(None, None))).unwrap_err();
        assert!(matches!(e, SpecError::NoCommand));
        assert!(e.is_invalid_argument());
        assert!(args(&cfg(&[], &[]), None).is_err());
        assert!(args(&cfg(&[], &[]), Some(&image(Some(&[""]), None))).is_err());
    }

    #[test]
    fn env_override_and_defaults() {
        let img = ConfigBuilder::default()
            .env(s(&["PATH=/img/bin", "A=image", "B=image", "HOME=/root"]))
            .build()
            .unwrap();
        let mut c = cfg(&["x"], &[]);
        c.envs = vec![
            KeyValue {
                key: "A".into(),
                value: "cri".into(),
            },
            KeyValue {
                key: "C".into(),
                value: "a=b".into(),
            },
        ];
        assert_eq!(
            env(&c, Some(&img), "pod-1"),
            s(&[
                "PATH=/img/bin",
                "HOSTNAME=pod-1",
                "A=cri",
                "B=image",
                "HOME=/root",
                "C=a=b"
            ])
        );
        // No image env: default PATH; tty adds TERM.
        c.tty = true;
        c.envs.clear();
        assert_eq!(
            env(&c, None, "h"),
            s(&[DEFAULT_PATH_ENV, "TERM=xterm", "HOSTNAME=h"])
        );
    }

    #[test]
    fn env_unset_without_equals() {
        let mut e = s(&["A=1", "B=2"]);
        replace_or_append_env(&mut e, &s(&["A", "C=3", "B=4"]));
        assert_eq!(e, s(&["B=4", "C=3"]));
    }

    #[test]
    fn working_dir() {
        let img = ConfigBuilder::default()
            .working_dir("/srv".to_string())
            .build()
            .unwrap();
        let mut c = cfg(&["x"], &[]);
        assert_eq!(cwd(&c, Some(&img)).unwrap(), "/srv");
        assert_eq!(cwd(&c, None).unwrap(), "/");
        c.working_dir = "/work".into();
        assert_eq!(cwd(&c, Some(&img)).unwrap(), "/work");
        c.working_dir = "rel".into();
        let e = cwd(&c, Some(&img)).unwrap_err();
        assert!(e.is_invalid_argument());
    }

    #[test]
    fn exec_process_keeps_identity() {
        let base = SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(s(&["/bin/server"]))
                    .env(s(&["A=1"]))
                    .cwd("/srv")
                    .terminal(true)
                    .no_new_privileges(true)
                    .apparmor_profile("p".to_string())
                    .user(UserBuilder::default().uid(7u32).gid(8u32).build().unwrap())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let p = process_for_exec(&base, &s(&["ls", "-l"])).unwrap();
        assert_eq!(p.args().as_deref(), Some(&s(&["ls", "-l"])[..]));
        assert_eq!(p.env().as_deref(), Some(&s(&["A=1"])[..]));
        assert_eq!(p.cwd().to_str(), Some("/srv"));
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.apparmor_profile().as_deref(), Some("p"));
        assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
        let e = process_for_exec(&base, &[]).unwrap_err();
        assert!(e.is_invalid_argument());
    }
}
