//! `strata validate`: every problem at once, each with file:line:col.

use crate::support::Strata;

fn validate(fixture: &str) -> crate::support::Output {
    Strata::new(["validate", "--stack", &format!("tests/fixtures/{fixture}")]).run()
}

#[test]
fn the_demo_stack_is_valid_and_summarised_in_one_line() {
    let out = Strata::new(["validate", "--stack", "stacks/demo"])
        .run()
        .code(0);
    assert_eq!(out.stdout, "stack \"demo\" is valid: 4 layers, 4 waves\n");
    assert_eq!(out.stderr, "");
}

#[test]
fn every_cycle_is_reported_as_its_full_path() {
    let out = validate("cycle").code(1);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn unknown_names_get_a_did_you_mean_with_their_place() {
    let out = validate("typos").code(1);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn an_output_the_module_does_not_declare_is_refused_with_a_did_you_mean() {
    let out = validate("outputs").code(1);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn sources_must_be_directories_inside_the_stack_root() {
    let out = validate("escapes").code(1);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn wrong_types_durations_choices_and_duplicates_are_all_reported() {
    let out = validate("types").code(1);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn each_pool_bound_is_checked_with_its_place_and_a_typo_gets_a_did_you_mean() {
    let out = validate("pools").code(1);
    assert_eq!(
        out.stderr,
        "error: tests/fixtures/pools/strata.hcl:2:28: parallelism must be at least 1\n\
         error: tests/fixtures/pools/strata.hcl:3:28: kubernetes_parallelism must be at least 1\n\
         error: tests/fixtures/pools/strata.hcl:4:3: unknown attribute \"kubernetes_paralelism\" in stack \"pools\" (did you mean \"kubernetes_parallelism\"?)\n\
         validation failed: 3 errors\n"
    );
}

#[test]
fn a_syntax_error_names_its_line_and_column() {
    let out = validate("syntax").code(1);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn a_directory_without_a_stack_file_is_refused() {
    let out = validate("does-not-exist").code(1);
    assert_eq!(
        out.stderr,
        "error: tests/fixtures/does-not-exist/strata.hcl:1:1: no strata.hcl in tests/fixtures/does-not-exist: not a stack directory\nvalidation failed: 1 error\n"
    );
}

#[test]
fn a_symlink_out_of_the_stack_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack");
    std::fs::create_dir_all(stack.join("infra")).unwrap();
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("../../elsewhere", stack.join("infra/link")).unwrap();
    std::os::unix::fs::symlink("..", stack.join("infra/inside")).unwrap();
    std::fs::write(
        stack.join("strata.hcl"),
        "stack \"s\" {}\nterraform \"out\" {\n  source = \"infra/link\"\n}\nterraform \"in\" {\n  source = \"infra/inside\"\n}\n",
    )
    .unwrap();
    let out = Strata::new(["validate", "--stack", "stack"])
        .cwd(dir.path())
        .run()
        .code(1);
    assert_eq!(
        out.stderr,
        "error: stack/strata.hcl:2:1: terraform.out: source \"infra/link\" resolves outside the stack root (through a symlink)\nvalidation failed: 1 error\n"
    );
}

#[test]
fn an_attribute_set_twice_is_a_syntax_error_at_the_second() {
    let out = validate("repeated").code(1);
    assert_eq!(
        out.stderr,
        "error: tests/fixtures/repeated/strata.hcl:5:3: syntax error: invalid attribute; expected unique attribute key; found redefined attribute\nvalidation failed: 1 error\n"
    );
}
