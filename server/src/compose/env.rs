//! `environment` and `env_file` → plain variables and secret references.
//!
//! A value that is exactly `${NAME}` (or `$NAME`, or a bare `KEY`) references
//! the environment's secret `NAME`; any other value is kept as a template
//! (see [`super::values`]). `env_file`s are read in order from the uploaded
//! files, and `environment` wins over them, as in compose.
use super::{
    envfile,
    values::{env_template, whole_reference},
    Report, Uploads,
};
use compose_spec::{service::env_file::EnvFile, ListOrMap, ShortOrLong, Value};
use slipway_types::{api::SecretRef, EnvVarName};
use std::collections::BTreeMap;

/// A service's variables.
#[derive(Default)]
pub struct Env {
    pub vars: BTreeMap<EnvVarName, String>,
    pub secrets: Vec<SecretRef>,
}

enum Raw {
    Template(String),
    Literal(String),
    FromOutside,
}

impl Env {
    fn set_var(&mut self, name: EnvVarName, value: String) {
        self.secrets.retain(|s| s.env != name);
        self.vars.insert(name, value);
    }

    fn set_secret(&mut self, env: EnvVarName, secret: EnvVarName) {
        self.vars.remove(&env);
        self.secrets.retain(|s| s.env != env);
        self.secrets.push(SecretRef { env, secret });
    }

    fn set(&mut self, kpath: &str, key: &str, raw: Raw, r: &mut Report) {
        let name = match EnvVarName::try_from(key) {
            Ok(n) => n,
            Err(e) => {
                r.invalid(kpath, e);
                return;
            }
        };
        match raw {
            Raw::FromOutside => self.set_secret(name.clone(), name),
            Raw::Literal(v) => self.set_var(name, v.replace('$', "$$")),
            Raw::Template(v) => {
                if let Some(secret) = whole_reference(&v) {
                    match EnvVarName::try_from(secret) {
                        Ok(secret) => self.set_secret(name, secret),
                        Err(e) => r.invalid(kpath, e),
                    }
                    return;
                }
                match env_template(&v) {
                    Ok(v) => self.set_var(name, v),
                    Err(e) => r.invalid(kpath, e),
                }
            }
        }
    }

    fn merge(&mut self, over: Env) {
        for (k, v) in over.vars {
            self.set_var(k, v);
        }
        for s in over.secrets {
            self.set_secret(s.env, s.secret);
        }
    }
}

/// The service's `env_file`s, then its `environment` over them.
pub fn convert(
    path: &str,
    env_file: Option<&EnvFile>,
    environment: &ListOrMap,
    uploads: &Uploads,
    r: &mut Report,
) -> Env {
    let mut env = Env::default();
    if let Some(files) = env_file {
        for (i, f) in files.clone().into_list().into_iter().enumerate() {
            let epath = format!("{path}.env_file[{i}]");
            let (file, required) = match &f {
                ShortOrLong::Short(p) => (p.clone(), true),
                ShortOrLong::Long(c) => (c.path.clone(), c.required),
            };
            let Some(file) = file.to_str().map(str::to_owned) else {
                r.invalid(&epath, "path is not UTF-8");
                continue;
            };
            read_env_file(&epath, &file, required, uploads, r, &mut env);
        }
    }
    env.merge(convert_environment(path, environment, r));
    env
}

fn read_env_file(
    epath: &str,
    file: &str,
    required: bool,
    uploads: &Uploads,
    r: &mut Report,
    env: &mut Env,
) {
    let Some(content) = uploads.get(file, r) else {
        if required {
            r.invalid(
                epath,
                format!(
                    "{file} is a file on your machine: upload its content with the import as \
                     files[\"{file}\"] (its KEY=VALUE lines become the service's variables)"
                ),
            );
        } else {
            r.ignore(epath, &format!("{file} was not uploaded (required: false)"));
        }
        return;
    };
    match envfile::parse(content) {
        Ok(entries) => {
            for e in entries {
                let raw = match e.value {
                    envfile::Value::Template(v) => Raw::Template(v),
                    envfile::Value::Literal(v) => Raw::Literal(v),
                    envfile::Value::FromOutside => Raw::FromOutside,
                };
                env.set(&format!("{epath} ({file} line {})", e.line), &e.key, raw, r);
            }
            r.ignore(
                epath,
                &format!(
                    "{file} read: its values are stored in the service's spec as plain \
                     variables; keep passwords in the environment's secrets and write KEY=${{NAME}}"
                ),
            );
        }
        Err(errors) => {
            for e in errors {
                r.invalid(epath, format!("{file} {e}"));
            }
        }
    }
}

fn convert_environment(path: &str, env: &ListOrMap, r: &mut Report) -> Env {
    let mut out = Env::default();
    // `KEY=` is an empty value, a bare `KEY` is taken from the shell.
    let entries: Vec<(String, Option<String>)> = match env {
        ListOrMap::List(list) => list
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (e.clone(), None),
            })
            .collect(),
        ListOrMap::Map(map) => map
            .iter()
            .map(|(k, v)| {
                let v = v.as_ref().map(|v| match v {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                });
                (k.to_string(), v)
            })
            .collect(),
    };
    for (key, value) in entries {
        let kpath = format!("{path}.environment.{key}");
        let raw = value.map_or(Raw::FromOutside, Raw::Template);
        out.set(&kpath, &key, raw, r);
    }
    out
}
