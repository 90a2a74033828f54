//! The Debian package (`make deb` builds it from the release binary with `.ci/deb.sh`;
//! here from the test binary, so no release build is needed): what it holds, what it
//! declares it needs, and that the binary unpacked from it runs.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_package_holds_the_app_its_menu_entry_and_icon_and_runs_from_where_it_unpacks() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/deb.sh");
    let deb = run(Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_confab"))
        .arg(dir.path().join("out"))
        .env("DEB_COMPRESS", "gzip"));
    let deb = deb.trim();
    assert!(
        deb.ends_with(".deb") && Path::new(deb).exists(),
        "the script names the package: {deb}"
    );

    let field = |name: &str| run(Command::new("dpkg-deb").args(["--field", deb, name]));
    assert_eq!(field("Package").trim(), "confab");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    let depends = field("Depends");
    // Read from the binary (dpkg-shlibdeps): the C libraries it links (Opus is built in)...
    for lib in [
        "libc6",
        "libasound2",
        "libwebrtc-audio-processing1",
        "libxcb1",
    ] {
        assert!(depends.contains(lib), "Depends lacks {lib}: {depends}");
    }
    // ... and what the window opens at run time, which no ELF header shows.
    for lib in ["libxkbcommon-x11-0", "libegl1", "libgl1"] {
        assert!(depends.contains(lib), "Depends lacks {lib}: {depends}");
    }

    let contents = run(Command::new("dpkg-deb").args(["--contents", deb]));
    for path in [
        "./usr/bin/confab",
        "./usr/share/applications/confab.desktop",
        "./usr/share/icons/hicolor/256x256/apps/confab.png",
        "./usr/share/icons/hicolor/scalable/apps/confab.svg",
        "./usr/share/man/man1/confab.1.gz",
        "./usr/share/doc/confab/copyright",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{contents}"
        );
    }
    // Everything belongs to root, whoever built it.
    assert!(
        contents.lines().all(|l| l.contains(" root/root ")),
        "{contents}"
    );

    // Installed into a scratch root, the binary runs and is this version.
    let root = dir.path().join("root");
    run(Command::new("dpkg").arg("-x").arg(deb).arg(&root));
    let version = run(Command::new(root.join("usr/bin/confab")).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("confab {}", env!("CARGO_PKG_VERSION"))
    );
    let entry =
        std::fs::read_to_string(root.join("usr/share/applications/confab.desktop")).unwrap();
    assert!(
        entry.contains("\nExec=confab\n") && entry.contains("\nIcon=confab\n"),
        "{entry}"
    );
}
