//! `volumes` and `tmpfs`: named volumes, absolute binds, uploaded config
//! files and tmpfs mounts.
//!
//! A relative bind mount (`./nginx.conf:/etc/nginx/nginx.conf:ro`) names a
//! file on the user's machine: when its content was uploaded with the import
//! it becomes a [`ConfigFile`] (stored with the release, mounted read-only);
//! otherwise the error asks for the upload. Directories cannot be uploaded.
use super::{memory_mb, values::not_interpolated, values::unescape, Report, Uploads};
use compose_spec::{
    service::{
        volumes::{Mount, ShortVolume, Source},
        ByteValue,
    },
    ShortOrLong,
};
use slipway_types::{
    api::{ConfigFile, Tmpfs, VolumeMount},
    names::check_dns_label,
};

/// What a service's `volumes` and `tmpfs` become.
#[derive(Default)]
pub struct Mounts {
    pub volumes: Vec<VolumeMount>,
    pub files: Vec<ConfigFile>,
    pub tmpfs: Vec<Tmpfs>,
}

fn volume_name(path: &str, id: &str, r: &mut Report) -> Option<String> {
    let name: String = id
        .chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    if let Err(e) = check_dns_label(&name) {
        r.invalid(path, format!("volume name {id:?} {e}"));
        return None;
    }
    if name != id {
        r.ignore(
            path,
            &format!("volume {id} is named {name}: Slipway volume names are DNS labels"),
        );
    }
    Some(name)
}

/// The error for a relative host path that was not uploaded.
fn not_uploaded(host: &str, target: &str) -> String {
    let last = host.rsplit('/').next().unwrap_or(host);
    let directory = host == "." || host == ".." || host.ends_with('/') || last.is_empty();
    if directory {
        format!(
            "{host} is a directory on your machine: a directory cannot be imported \
             (bake it into the image, or use a named volume or an absolute host path)"
        )
    } else if last.contains('.') {
        format!(
            "{host} is a file on your machine: upload its content with the import as \
             files[\"{host}\"] (it is stored with the release and mounted read-only at {target})"
        )
    } else {
        format!(
            "{host} is a relative host path: if it is a single file, upload its content with \
             the import as files[\"{host}\"]; a directory cannot be imported (bake it into the \
             image, or use a named volume or an absolute host path)"
        )
    }
}

pub fn convert_volumes(
    path: &str,
    volumes: &compose_spec::service::Volumes,
    uploads: &Uploads,
    r: &mut Report,
    out: &mut Mounts,
) {
    for (i, v) in volumes.iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        let short: ShortVolume = match v {
            ShortOrLong::Short(s) => s.clone(),
            ShortOrLong::Long(m) => match m.clone().into_short() {
                Ok(s) => s,
                Err(Mount::Volume(v)) if v.source.is_none() => {
                    r.invalid(
                        &vpath,
                        "anonymous volumes are not supported: name the volume",
                    );
                    continue;
                }
                Err(Mount::Tmpfs(t)) => {
                    let size_mb = t
                        .tmpfs
                        .as_ref()
                        .and_then(|o| o.size.as_ref())
                        .and_then(|s| memory_mb(&format!("{vpath}.tmpfs.size"), s, r));
                    if t.tmpfs.as_ref().is_some_and(|o| o.mode.is_some()) {
                        r.ignore(&format!("{vpath}.tmpfs.mode"), "tmpfs mounts are 1777");
                    }
                    match t.common.target.as_path().to_str() {
                        Some(target) => out.tmpfs.push(Tmpfs {
                            target: target.to_owned(),
                            size_mb,
                        }),
                        None => r.invalid(&vpath, "target is not UTF-8"),
                    }
                    continue;
                }
                Err(m) => {
                    r.invalid(
                        &vpath,
                        format!(
                            "{} mounts with these options are not supported \
                             (only volume and bind mounts with source, target and read_only, \
                             and tmpfs mounts with size)",
                            m.kind()
                        ),
                    );
                    continue;
                }
            },
        };
        let Some(target) = short.container_path.as_path().to_str().map(str::to_owned) else {
            r.invalid(&vpath, "target is not UTF-8");
            continue;
        };
        let Some(opts) = short.options else {
            r.invalid(
                &vpath,
                "anonymous volumes are not supported: name the volume",
            );
            continue;
        };
        if opts.selinux.is_some() {
            r.ignore(&vpath, "SELinux relabelling is not applied");
        }
        let source = match &opts.source {
            Source::Volume(id) => volume_name(&vpath, id.as_str(), r),
            Source::HostPath(p) => match p.as_path().to_str() {
                Some(s) if s.starts_with('/') => Some(s.to_owned()),
                Some(s) => {
                    match uploads.get(s, r) {
                        Some(content) => {
                            if !opts.read_only {
                                r.ignore(&vpath, "config files are mounted read-only");
                            }
                            out.files.push(ConfigFile {
                                target,
                                content: content.to_owned(),
                            });
                        }
                        None => r.invalid(&vpath, not_uploaded(s, &target)),
                    }
                    continue;
                }
                None => {
                    r.invalid(&vpath, "host path is not UTF-8");
                    None
                }
            },
        };
        if let Some(source) = source {
            match unescape(&source) {
                Ok(source) => out.volumes.push(VolumeMount {
                    source,
                    target,
                    read_only: opts.read_only,
                }),
                Err(var) => r.invalid(&vpath, not_interpolated(&var)),
            }
        }
    }
}

/// `tmpfs: /run` or `["/tmp:size=64m,mode=1777"]`.
pub fn convert_tmpfs<'a>(
    path: &str,
    entries: impl IntoIterator<Item = &'a str>,
    r: &mut Report,
    out: &mut Mounts,
) {
    for (i, entry) in entries.into_iter().enumerate() {
        let tpath = format!("{path}.tmpfs[{i}]");
        let (target, opts) = entry.split_once(':').unwrap_or((entry, ""));
        let mut size_mb = None;
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            match opt.strip_prefix("size=") {
                Some(size) => match size.parse::<ByteValue>() {
                    Ok(b) => size_mb = memory_mb(&tpath, &b, r).map(|m| m.max(1)),
                    Err(e) => r.invalid(&tpath, format!("size {size:?}: {e}")),
                },
                None => r.ignore(&tpath, &format!("tmpfs option {opt} is not applied")),
            }
        }
        out.tmpfs.push(Tmpfs {
            target: target.to_owned(),
            size_mb,
        });
    }
}
