use super::*;

fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).expect("a valid LinuxSeccomp")
}

/// libseccomp's own text form of the filter (PFC), to assert on what was compiled.
fn pfc(filter: &SeccompFilter) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("seccomp-pfc-{}-{n}", std::process::id());
    let path = std::env::temp_dir().join(name);
    let file = std::fs::File::create(&path).unwrap();
    filter.context.export_pfc(&file).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    text
}

#[test]
fn errno_rules_carry_their_errno_and_the_default_is_eperm() {
    let (filter, warnings) = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"},
        ]
    })))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let text = pfc(&filter);
    assert!(text.contains("action ERRNO(38)"), "{text}");
    assert!(text.contains("action ERRNO(1)"), "{text}");
    assert!(text.contains("action ALLOW"), "{text}");
}

#[test]
fn conditions_on_one_argument_become_separate_rules() {
    let args = |ops: &[(usize, &str)]| {
        ops.iter()
            .map(|(index, op)| serde_json::json!({"index": index, "value": 5, "op": op}))
            .collect::<Vec<_>>()
    };
    let parsed: Vec<LinuxSeccompArg> = serde_json::from_value(serde_json::json!(args(&[
        (0, "SCMP_CMP_EQ"),
        (1, "SCMP_CMP_GT")
    ])))
    .unwrap();
    assert!(matches!(conditions(&parsed).unwrap(), Conditions::All(c) if c.len() == 2));
    let same: Vec<LinuxSeccompArg> = serde_json::from_value(serde_json::json!(args(&[
        (0, "SCMP_CMP_EQ"),
        (0, "SCMP_CMP_NE")
    ])))
    .unwrap();
    assert!(matches!(conditions(&same).unwrap(), Conditions::EachAlone(c) if c.len() == 2));
    let out_of_range: Vec<LinuxSeccompArg> =
        serde_json::from_value(serde_json::json!(args(&[(6, "SCMP_CMP_EQ")]))).unwrap();
    let err = conditions(&out_of_range).unwrap_err().to_string();
    assert!(err.contains("argument index 6"), "{err}");
}

#[test]
fn a_masked_compare_uses_value_as_the_mask() {
    let (filter, _) = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{
            "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]
        }]
    })))
    .unwrap();
    let text = pfc(&filter);
    // libseccomp prints the low word of a masked compare as `$a0.lo32 & 0x000000ff == 8`.
    assert!(text.contains("$a0.lo32 & 0x000000ff == 8"), "{text}");
}

#[test]
fn unknown_names_are_skipped_and_only_lost_restrictions_are_reported() {
    let (_, warnings) = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    assert!(
        warnings.is_empty(),
        "an unknown allowed syscall stays denied: {warnings:?}"
    );
    let (_, warnings) = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall"], "action": "SCMP_ACT_KILL_PROCESS"}]
    })))
    .unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("no_such_syscall"), "{warnings:?}");
}

#[test]
fn a_rule_repeating_the_default_is_dropped_not_an_error() {
    let (filter, _) = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    assert!(!pfc(&filter).contains("if ($syscall == 0)"));
}

#[test]
fn architectures_and_flags_are_applied() {
    let (filter, _) = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    })))
    .unwrap();
    assert!(filter.context.is_arch_present(ScmpArch::X86).unwrap());
    assert!(filter.context.is_arch_present(ScmpArch::X32).unwrap());
    assert!(filter.context.get_ctl_log().unwrap());
    assert!(filter.context.get_ctl_ssb().unwrap());
    assert!(
        !filter.context.get_ctl_nnp().unwrap(),
        "no_new_privs is the spec's to set"
    );
}

#[test]
fn notify_and_listeners_are_refused_clearly() {
    let err = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("linux.seccomp: SCMP_ACT_NOTIFY"), "{err}");
    let err = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock"
    })))
    .unwrap_err()
    .to_string();
    assert!(err.contains("listenerPath"), "{err}");
}

#[test]
fn kill_is_kill_thread_and_trace_defaults_to_eperm() {
    assert_eq!(
        action(LinuxSeccompAction::ScmpActKill, None).unwrap(),
        ScmpAction::KillThread
    );
    assert_eq!(
        action(LinuxSeccompAction::ScmpActTrace, None).unwrap(),
        ScmpAction::Trace(1)
    );
    assert_eq!(
        action(LinuxSeccompAction::ScmpActErrno, Some(13)).unwrap(),
        ScmpAction::Errno(13)
    );
}
