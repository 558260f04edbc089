//! The dashboard bundle, `static/pkg/` (the wasm and its JS glue), served
//! precompressed.
//!
//! A release build writes `<file>.gz` beside each file (zopfli, once per
//! build). A browser that accepts gzip gets that file as is, with
//! `Content-Encoding: gzip`: no compression work per request, and a third fewer
//! bytes than the `Compress` middleware sends, which uses gzip's fastest level.
//! Without a `.gz`, or with one older than its file (a newer debug build), the
//! plain file is served and compressed on the fly like every other response.
use crate::{error::ApiError, state::AppState};
use actix_files::NamedFile;
use actix_web::{
    http::header::{self, ContentEncoding, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use std::path::{Path, PathBuf};

/// `GET|HEAD /pkg/{name}`.
pub async fn pkg_file(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    if !is_plain_file_name(&name) {
        return Err(ApiError::NotFound("file"));
    }
    let file = state.settings.static_dir.join("pkg").join(&name);
    let gz = file.with_file_name(format!("{name}.gz"));
    let gzip = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let named = match gzip && is_fresh(&gz, &file).await {
        true => NamedFile::open_async(&gz)
            .await
            .map_err(|_| ApiError::NotFound("file"))?
            .set_content_type(content_type(&name))
            .set_content_encoding(ContentEncoding::Gzip),
        false => NamedFile::open_async(&file)
            .await
            .map_err(|_| ApiError::NotFound("file"))?,
    };
    let mut res = named.into_response(&req);
    res.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(res)
}

/// A file name of the bundle: no path separators, no `..`, not hidden.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether an `Accept-Encoding` value allows gzip (`gzip`, `x-gzip` or `*`,
/// without `q=0`).
fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let q_zero = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !q_zero
            && (coding.eq_ignore_ascii_case("gzip")
                || coding.eq_ignore_ascii_case("x-gzip")
                || coding == "*")
    })
}

/// `gz` exists and is not older than `file`.
async fn is_fresh(gz: &Path, file: &Path) -> bool {
    let modified =
        |p: PathBuf| async move { tokio::fs::metadata(p).await.and_then(|m| m.modified()).ok() };
    match (modified(gz.into()).await, modified(file.into()).await) {
        (Some(gz), Some(file)) => gz >= file,
        _ => false,
    }
}

fn content_type(name: &str) -> actix_web::mime::Mime {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    actix_files::file_extension_to_mime(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_served() {
        for ok in ["slipway_frontend_bg.wasm", "slipway_frontend.js", "a-b.c"] {
            assert!(is_plain_file_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "..", "../x", "a/b", "a\\b", "x%2f", "é.js"] {
            assert!(!is_plain_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn gzip_is_accepted_unless_refused() {
        for yes in [
            "gzip",
            "gzip, deflate, br",
            "br;q=1.0, gzip;q=0.5",
            "*",
            "X-GZIP",
        ] {
            assert!(accepts_gzip(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br",
            "gzip;q=0",
            "gzip; q=0.0, br",
            "deflate",
        ] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }

    #[test]
    fn the_wasm_keeps_its_own_content_type() {
        assert_eq!(content_type("x_bg.wasm").essence_str(), "application/wasm");
        assert_eq!(content_type("x.js").essence_str(), "text/javascript");
    }
}
