//! Reading ansible-playbook's output (the default stdout callback, results
//! as one-line JSON) for what failed: the task banner before a `fatal:` or
//! `failed:` line names the task, the line itself the host and the result.

/// Why a run failed, as its output says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Task {
        task: String,
        host: String,
        message: String,
    },
    Unreachable {
        task: String,
        host: String,
        message: String,
    },
    /// `ERROR! ...`: a playbook that does not parse, a missing role, a bad option.
    Error { message: String },
}

/// Messages longer than this are cut: the error is one line, the log has all.
const MAX_MESSAGE: usize = 400;

/// The last failure that was not ignored (`...ignoring`), or None.
pub(crate) fn last_failure(output: &str) -> Option<Failure> {
    let mut task = String::from("(before the first task)");
    let mut found: Option<Failure> = None;
    let mut lines = output.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end();
        if let Some(name) = banner(line) {
            task = name.to_string();
        } else if line == "...ignoring" {
            found = None;
        } else if let Some((host, what, json)) = result_line(line) {
            let message = describe(json);
            found = Some(if what == "UNREACHABLE!" {
                Failure::Unreachable {
                    task: task.clone(),
                    host: host.to_string(),
                    message,
                }
            } else {
                Failure::Task {
                    task: task.clone(),
                    host: host.to_string(),
                    message,
                }
            });
        } else if let Some(first) = line.strip_prefix("ERROR! ") {
            // Ansible adds where, a few lines on: "The error appears to be in
            // '/p/site.yml': line 4, column 7, but may ...".
            let mut message = first.trim().to_string();
            for next in lines.by_ref().take(4) {
                if let Some(place) = next.trim().strip_prefix("The error appears to be in ") {
                    let place = place.split(", but may").next().unwrap_or(place);
                    message = format!("{message} (in {})", place.trim_end_matches('.'));
                    break;
                }
            }
            found = Some(Failure::Error {
                message: shorten(&message),
            });
        }
    }
    found
}

/// `TASK [name] ****` or `RUNNING HANDLER [name] ****`: the name.
fn banner(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("TASK [")
        .or_else(|| line.strip_prefix("RUNNING HANDLER ["))?;
    // Names may hold ']'; the banner's own ']' is the last one.
    rest.rsplit_once(']').map(|(name, _)| name)
}

/// `fatal: [host]: FAILED! => {...}`, `fatal: [host]: UNREACHABLE! => {...}`,
/// `failed: [host] (item=x) => {...}`: host, kind and the result's JSON.
fn result_line(line: &str) -> Option<(&str, &str, &str)> {
    let (rest, looped) = match line.strip_prefix("fatal: [") {
        Some(rest) => (rest, false),
        None => (line.strip_prefix("failed: [")?, true),
    };
    let (host, rest) = rest.split_once(']')?;
    let (head, json) = rest.split_once(" => ")?;
    let what = if looped {
        "FAILED!"
    } else {
        head.trim_start_matches(':').trim()
    };
    Some((host, what, json))
}

/// One line from a result: its `msg`, with the command's last error line
/// when a command failed, or a crashed module's.
fn describe(json: &str) -> String {
    let Ok(result) = serde_json::from_str::<serde_json::Value>(json) else {
        return shorten(json);
    };
    let text = |key: &str| -> Option<String> {
        match result.get(key)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => (!s.trim().is_empty()).then(|| s.clone()),
            other => Some(other.to_string()),
        }
    };
    let last_line = |key: &str| {
        text(key).and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
    };
    let mut message = text("msg")
        .or_else(|| text("reason"))
        .unwrap_or_else(|| "failed".to_string());
    if let Some(rc) = result.get("rc").filter(|rc| !rc.is_null()) {
        message = format!("{message} (rc {rc})");
    }
    let detail = last_line("stderr")
        .or_else(|| last_line("module_stderr"))
        .or_else(|| last_line("stdout"))
        .or_else(|| last_line("module_stdout"));
    if let Some(detail) = detail.filter(|d| !message.contains(d.trim())) {
        message = format!("{message}: {}", detail.trim());
    }
    if let Some(item) = result.get("item").filter(|i| !i.is_null()) {
        let item = item
            .as_str()
            .map_or_else(|| item.to_string(), str::to_string);
        message = format!("{message} (item {item})");
    }
    shorten(&message)
}

fn shorten(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX_MESSAGE {
        format!(
            "{}…",
            one_line.chars().take(MAX_MESSAGE).collect::<String>()
        )
    } else {
        one_line
    }
}

/// The play recap of `host` (`ok=5 changed=2 skipped=1`), zero counts left out.
pub(crate) fn recap(output: &str, host: &str) -> Option<String> {
    let line = output.lines().rev().find(|l| {
        l.split_once(':')
            .is_some_and(|(h, rest)| h.trim() == host && rest.contains("ok="))
    })?;
    let counts: Vec<&str> = line
        .split_once(':')?
        .1
        .split_whitespace()
        .filter(|c| c.split_once('=').is_some_and(|(_, n)| n != "0"))
        .collect();
    Some(counts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED: &str = r#"
PLAY [Example] *****************************************************************

TASK [Write a file] ************************************************************
changed: [imagehost]

TASK [Probe [optional] thing] **************************************************
fatal: [imagehost]: FAILED! => {"changed": false, "msg": "probe failed"}
...ignoring

TASK [This task fails on purpose] **********************************************
fatal: [imagehost]: FAILED! => {"changed": true, "cmd": ["sh", "-c", "echo oops >&2; exit 3"], "msg": "non-zero return code", "rc": 3, "stderr": "oops", "stdout": ""}

PLAY RECAP *********************************************************************
imagehost                  : ok=2    changed=1    unreachable=0    failed=1    skipped=0    rescued=0    ignored=1
"#;

    #[test]
    fn the_last_failure_names_its_task_host_and_why_and_ignored_ones_are_skipped() {
        assert_eq!(
            last_failure(FAILED),
            Some(Failure::Task {
                task: "This task fails on purpose".into(),
                host: "imagehost".into(),
                message: "non-zero return code (rc 3): oops".into(),
            })
        );
        assert_eq!(
            recap(FAILED, "imagehost").as_deref(),
            Some("ok=2 changed=1 failed=1 ignored=1")
        );
    }

    #[test]
    fn loop_items_unreachable_hosts_and_errors_are_read() {
        let looped = "TASK [role : Install [things]] ***\nfailed: [h] (item=nope) => {\"item\": \"nope\", \"msg\": \"No package matching 'nope' is available\"}\n";
        assert_eq!(
            last_failure(looped),
            Some(Failure::Task {
                task: "role : Install [things]".into(),
                host: "h".into(),
                message: "No package matching 'nope' is available (item nope)".into(),
            })
        );
        let unreachable = "TASK [Gathering Facts] ***\nfatal: [h]: UNREACHABLE! => {\"changed\": false, \"msg\": \"/x does not look like a chrootable dir (/bin/sh missing)\", \"unreachable\": true}\n";
        assert!(matches!(
            last_failure(unreachable),
            Some(Failure::Unreachable { task, .. }) if task == "Gathering Facts"
        ));
        let error = "ERROR! conflicting action statements: copy, apt\n\nThe error appears to be in '/p/site.yml': line 4, column 7, but may\nbe elsewhere in the file depending on the exact syntax problem.\n";
        assert_eq!(
            last_failure(error),
            Some(Failure::Error {
                message:
                    "conflicting action statements: copy, apt (in '/p/site.yml': line 4, column 7)"
                        .into()
            })
        );
        assert_eq!(last_failure("PLAY RECAP ***\nh : ok=1 failed=0\n"), None);
    }

    #[test]
    fn a_crashed_module_says_why_on_one_line() {
        let crash = "TASK [t] ***\nfatal: [h]: FAILED! => {\"changed\": false, \"module_stderr\": \"Traceback\\n  File x\\nImportError: no apt\\n\", \"module_stdout\": \"\", \"msg\": \"MODULE FAILURE\\nSee stdout/stderr for the exact error\", \"rc\": 1}\n";
        let Some(Failure::Task { message, .. }) = last_failure(crash) else {
            panic!("no failure found");
        };
        assert_eq!(
            message,
            "MODULE FAILURE See stdout/stderr for the exact error (rc 1): ImportError: no apt"
        );
    }
}
