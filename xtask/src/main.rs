//! Project build tasks.
//!
//! `cargo run -p xtask -- build-frontend [--release]` compiles the dashboard to
//! `wasm32-unknown-unknown` in its own target dir (`$CARGO_TARGET_DIR/wasm`, so
//! a wasm build never waits on the cargo lock of a host build) and runs
//! wasm-bindgen *as a library* (web target) into `static/pkg/`. No trunk, no
//! downloaded binaries.
//!
//! A release build then
//! - shrinks the wasm with binaryen's `wasm-opt` when one is installed: npm
//!   `binaryen@132` under `scripts/wasm-opt/` (the scripts install it), or the
//!   executable named by `SLIPWAY_WASM_OPT` (`SLIPWAY_WASM_OPT=0` skips it).
//!   Never Debian's `binaryen` package: its wasm-opt breaks the app. Without
//!   one the build still works, about 3 % larger.
//! - writes `*.gz` beside the wasm and the JS, compressed once with zopfli, which
//!   the server sends to browsers that accept gzip instead of compressing on
//!   every request (at gzip's fastest level, which sends a third more bytes).
//!
//! The wasm build gets `--cfg erase_components` (Leptos type-erases every
//! component's view into `AnyView`): the release bundle is much smaller and
//! compiles faster. `SLIPWAY_WASM_KEEP_NAMES=1` keeps the wasm name section in
//! a release build, for size analysis (`twiggy top static/pkg/*.wasm`).
use anyhow::{bail, Context, Result};
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const CRATE: &str = "slipway-frontend";
const WASM_NAME: &str = "slipway_frontend";
const TARGET: &str = "wasm32-unknown-unknown";

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build-frontend") => {
            let release = args[1..].iter().any(|a| a == "--release");
            if let Some(bad) = args[1..].iter().find(|a| *a != "--release") {
                bail!("unknown option {bad:?} (usage: build-frontend [--release])");
            }
            build_frontend(release)
        }
        _ => {
            eprintln!("usage: cargo run -p xtask -- build-frontend [--release]");
            std::process::exit(2);
        }
    }
}

/// Appends `flags` to the rustflags cargo will use for the target build,
/// keeping whatever the caller set (`CARGO_ENCODED_RUSTFLAGS` wins over
/// `RUSTFLAGS` in cargo, so extend the one that is set).
fn add_rustflags(cmd: &mut Command, flags: &[String]) {
    match env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(enc) if !enc.is_empty() => {
            let mut all: Vec<&str> = enc.split('\x1f').collect();
            all.extend(flags.iter().map(String::as_str));
            cmd.env("CARGO_ENCODED_RUSTFLAGS", all.join("\x1f"));
        }
        _ => {
            let mut all = env::var("RUSTFLAGS").unwrap_or_default();
            for f in flags {
                if !all.is_empty() {
                    all.push(' ');
                }
                all.push_str(f);
            }
            cmd.env("RUSTFLAGS", all);
        }
    }
}

/// `--remap-path-prefix` flags that shorten the source paths a release wasm
/// carries in its panic locations: `tachys-0.2.19/src/html/event.rs` instead of
/// `/root/.cargo/registry/src/index.crates.io-…/tachys-0.2.19/src/html/event.rs`.
/// The bundle gets smaller, does not show the build machine's directories,
/// and is the same wherever it is built. Paths with whitespace are left alone
/// (`RUSTFLAGS` is split on it).
fn path_remaps(root: &Path) -> Vec<String> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut prefixes: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(home) = cargo_home {
        if let Ok(indexes) = std::fs::read_dir(home.join("registry").join("src")) {
            prefixes.extend(indexes.flatten().map(|d| (d.path(), "")));
        }
        prefixes.push((home.join("git").join("checkouts"), "git"));
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() {
        let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !sysroot.is_empty() {
            let src = Path::new(&sysroot)
                .join("lib")
                .join("rustlib")
                .join("src")
                .join("rust");
            prefixes.push((src, "rust"));
        }
    }
    prefixes.push((root.to_path_buf(), ""));
    prefixes
        .into_iter()
        .filter_map(|(from, to)| {
            let from = from.to_str()?.to_owned();
            (!from.contains(char::is_whitespace)).then(|| {
                format!(
                    "--remap-path-prefix={from}/={to}{}",
                    if to.is_empty() { "" } else { "/" }
                )
            })
        })
        .collect()
}

/// The checkout being built: the nearest directory, from the current one up,
/// holding `xtask/Cargo.toml`. Found at run time, not compile time, because a
/// target dir shared between checkouts may run an xtask built in another one.
fn workspace_root() -> PathBuf {
    let cwd = env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| d.join("xtask").join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

fn wasm_target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("wasm"),
        _ => root.join("target").join("wasm"),
    }
}

fn build_frontend(release: bool) -> Result<()> {
    let root = workspace_root();
    let target_dir = wasm_target_dir(&root);
    let profile = if release { "wasm-release" } else { "dev" };
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "-p",
            CRATE,
            "--target",
            TARGET,
            "--profile",
            profile,
        ])
        .env("CARGO_TARGET_DIR", &target_dir);
    let mut flags = vec!["--cfg".to_owned(), "erase_components".to_owned()];
    if release {
        flags.extend(path_remaps(&root));
    }
    add_rustflags(&mut cmd, &flags);
    eprintln!(
        "xtask: cargo build -p {CRATE} --target {TARGET} --profile {profile} (CARGO_TARGET_DIR={})",
        target_dir.display()
    );
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build of {CRATE} failed ({status})");
    }

    // cargo names the output dir "debug" for the dev profile.
    let profile_dir = if release { "wasm-release" } else { "debug" };
    let wasm = target_dir
        .join(TARGET)
        .join(profile_dir)
        .join(format!("{WASM_NAME}.wasm"));
    if !wasm.is_file() {
        bail!("expected {} after the build", wasm.display());
    }

    let out_dir = root.join("static").join("pkg");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let keep_names = env::var_os("SLIPWAY_WASM_KEEP_NAMES").is_some_and(|v| v == "1");
    if release && !keep_names && release_is_current(&wasm, &out_dir) {
        eprintln!("xtask: static/pkg is up to date with {}", wasm.display());
        // Marks the files as this build's (scripts/lib.sh checks that the wasm
        // was written), each `.gz` no older than its file.
        return touch_outputs(&out_dir);
    }
    eprintln!("xtask: wasm-bindgen --target web → {}", out_dir.display());
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)?
        .typescript(false)
        .debug(!release)
        .keep_debug(false)
        .remove_name_section(release && !keep_names)
        .remove_producers_section(release)
        .out_name(WASM_NAME)
        .generate(&out_dir)
        .context("wasm-bindgen")?;

    let wasm_out = out_dir.join(format!("{WASM_NAME}_bg.wasm"));
    if release && !keep_names {
        optimize_wasm(&root, &wasm_out)?;
    }

    for name in [format!("{WASM_NAME}_bg.wasm"), format!("{WASM_NAME}.js")] {
        let path = out_dir.join(&name);
        let gz = out_dir.join(format!("{name}.gz"));
        if release {
            precompress(&path, &gz)?;
        } else if gz.exists() {
            // A stale .gz would be served instead of the fresh debug build.
            std::fs::remove_file(&gz).with_context(|| format!("removing {}", gz.display()))?;
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let raw = size(&path);
        if raw == 0 {
            bail!("{} is missing or empty", path.display());
        }
        match release {
            true => eprintln!(
                "xtask:   {name}: {} KiB, {} KiB gzip",
                raw / 1024,
                size(&gz) / 1024
            ),
            false => eprintln!("xtask:   {name}: {} KiB", raw / 1024),
        }
    }
    Ok(())
}

/// Whether the release files in `out_dir` (the `.gz` files are written last)
/// are newer than both the compiled `wasm` and this xtask: then wasm-bindgen,
/// wasm-opt and zopfli (a minute together) have nothing new to do.
fn release_is_current(wasm: &Path, out_dir: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let inputs = [
        modified(wasm),
        env::current_exe().ok().and_then(|exe| modified(&exe)),
    ];
    let Some(newest_input) = inputs
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max())
    else {
        return false;
    };
    [
        format!("{WASM_NAME}_bg.wasm.gz"),
        format!("{WASM_NAME}.js.gz"),
    ]
    .iter()
    .all(|name| modified(&out_dir.join(name)).is_some_and(|t| t > newest_input))
}

fn touch_outputs(out_dir: &Path) -> Result<()> {
    let now = std::time::SystemTime::now();
    for name in [
        format!("{WASM_NAME}_bg.wasm"),
        format!("{WASM_NAME}.js"),
        format!("{WASM_NAME}_bg.wasm.gz"),
        format!("{WASM_NAME}.js.gz"),
    ] {
        let path = out_dir.join(name);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(now))
            .with_context(|| format!("touching {}", path.display()))?;
    }
    Ok(())
}

/// The wasm-opt to run, if any (see the module docs).
fn find_wasm_opt(root: &Path) -> Option<PathBuf> {
    match env::var_os("SLIPWAY_WASM_OPT") {
        Some(v) if v == "0" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => {
            let npm = root.join("scripts/wasm-opt/node_modules/.bin/wasm-opt");
            npm.is_file().then_some(npm)
        }
    }
}

/// `wasm-opt -Oz` with inlining off: binaryen's inlining makes the module
/// smaller but compress worse (measured: -Oz alone 13 % more gzip bytes,
/// -Oz without inlining 3 % fewer). The file is replaced only on success.
fn optimize_wasm(root: &Path, wasm: &Path) -> Result<()> {
    let Some(wasm_opt) = find_wasm_opt(root) else {
        eprintln!(
            "xtask: wasm-opt not found: the wasm is not optimised (npm ci --prefix scripts/wasm-opt, or SLIPWAY_WASM_OPT=/path/to/wasm-opt)"
        );
        return Ok(());
    };
    let tmp = wasm.with_extension("opt.wasm");
    eprintln!("xtask: {} -Oz → {}", wasm_opt.display(), wasm.display());
    let status = Command::new(&wasm_opt)
        .arg(wasm)
        .arg("-o")
        .arg(&tmp)
        .args([
            // the features rustc 1.95 enables for wasm32-unknown-unknown
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
            "--no-inline=*",
            "-Oz",
            "--strip-debug",
            "--strip-producers",
        ])
        .status()
        .with_context(|| format!("running {}", wasm_opt.display()))?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!("{} failed ({status})", wasm_opt.display());
    }
    std::fs::rename(&tmp, wasm).with_context(|| format!("replacing {}", wasm.display()))
}

/// Writes `gz`: `path` compressed with zopfli in gzip format (a few percent
/// smaller than `gzip -9`; it runs once per build, not per request).
fn precompress(path: &Path, gz: &Path) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::with_capacity(data.len() / 3);
    let options = zopfli::Options {
        iteration_count: std::num::NonZeroU64::new(5).unwrap_or(std::num::NonZeroU64::MIN),
        ..zopfli::Options::default()
    };
    zopfli::compress(options, zopfli::Format::Gzip, &data[..], &mut out)
        .with_context(|| format!("compressing {}", path.display()))?;
    let tmp = gz.with_extension("gz.tmp");
    std::fs::write(&tmp, &out).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, gz).with_context(|| format!("writing {}", gz.display()))
}
