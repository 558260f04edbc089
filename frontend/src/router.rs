//! The dashboard's router: the URL as signals, `history.pushState` and
//! `popstate`, same-site link clicks handled in the page, and a route table
//! of `/segment/:param` patterns matched by [`match_path`].
//!
//! Written here instead of using `leptos_router` because the dashboard needs
//! only this much of it, and that crate's nested-route machinery was a tenth
//! of the gzipped bundle (50 kB of 474 kB, see bench/README.md).
//!
//! A page stays mounted while only its parameters change (from one service to
//! another): it reads them through [`use_param`], a memo.
use leptos::{ev, prelude::*};
use std::cell::Cell;
use wasm_bindgen::{JsCast, JsValue};

/// Path parameters of the matched route, in pattern order.
pub type Params = Vec<(&'static str, String)>;

/// The current URL, as the router knows it.
#[derive(Clone, Copy)]
struct Url {
    path: RwSignal<String>,
    search: RwSignal<String>,
}

thread_local! {
    static URL: Cell<Option<Url>> = const { Cell::new(None) };
}

fn window_url() -> (String, String) {
    let location = window().location();
    (
        location.pathname().unwrap_or_default(),
        location.search().unwrap_or_default(),
    )
}

fn url() -> Url {
    URL.with(|u| match u.get() {
        Some(url) => url,
        None => {
            let (path, search) = window_url();
            let url = Url {
                path: RwSignal::new(path),
                search: RwSignal::new(search),
            };
            u.set(Some(url));
            url
        }
    })
}

/// Reads the browser's URL into the signals (after a push or a popstate).
fn sync() {
    let url = url();
    let (path, search) = window_url();
    if url.path.get_untracked() != path {
        url.path.set(path);
    }
    if url.search.get_untracked() != search {
        url.search.set(search);
    }
}

/// Starts following the browser's history and link clicks. Call once, in the
/// root component.
pub fn install() {
    url();
    window_event_listener(ev::popstate, |_| sync());
    window_event_listener(ev::click, on_click);
}

/// Goes to an in-app URL (`/hosts?x=y`): a new history entry, the page at
/// the top.
pub fn navigate(to: &str) {
    let w = window();
    if let Ok(history) = w.history() {
        if history
            .push_state_with_url(&JsValue::NULL, "", Some(to))
            .is_err()
        {
            return;
        }
    }
    sync();
    w.scroll_to_with_x_and_y(0.0, 0.0);
}

/// The browser's current path, untracked (for code outside the view, such
/// as a request's completion).
pub fn current_path() -> String {
    window_url().0
}

/// The current path (tracked).
pub fn path() -> String {
    url().path.get()
}

/// A query parameter of the current URL (tracked), decoded by the browser.
pub fn query_param(name: &str) -> Option<String> {
    url().search.with(|s| {
        web_sys::UrlSearchParams::new_with_str(s)
            .ok()
            .and_then(|p| p.get(name))
    })
}

/// A path parameter of the matched route (`:id` → `use_param("id")`).
pub fn use_param(name: &'static str) -> Memo<Option<String>> {
    let params = use_context::<Memo<Params>>();
    Memo::new(move |_| {
        params.and_then(|p| p.with(|p| p.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())))
    })
}

/// A page of the route table.
pub type Page = fn() -> AnyView;

/// Renders the page of the first pattern in `routes` matching the path,
/// `fallback` if none does. The page is built again only when the matched
/// route changes, not when its parameters do, and untracked, like a component.
pub fn routes(routes: &'static [(&'static str, Page)], fallback: Page) -> impl IntoView {
    let url = url();
    let matched = Memo::new(move |_| {
        url.path.with(|path| {
            routes
                .iter()
                .enumerate()
                .find_map(|(i, (pattern, _))| match_path(pattern, path).map(|p| (i, p)))
        })
    });
    let index = Memo::new(move |_| matched.with(|m| m.as_ref().map(|(i, _)| *i)));
    let params: Memo<Params> = Memo::new(move |_| {
        matched.with(|m| m.as_ref().map(|(_, p)| p.clone()).unwrap_or_default())
    });
    provide_context(params);
    move || {
        let page = index.get().map_or(fallback, |i| routes[i].1);
        untrack(page)
    }
}

/// Matches `path` against `pattern` (`/hosts/:id/containers/:cid/logs`): the
/// same number of segments, literal segments equal, `:name` segments
/// non-empty. A trailing slash is ignored.
pub fn match_path(pattern: &'static str, path: &str) -> Option<Params> {
    fn segments(s: &str) -> std::str::Split<'_, char> {
        let s = s.strip_prefix('/').unwrap_or(s);
        s.strip_suffix('/').unwrap_or(s).split('/')
    }
    let mut params = Params::new();
    let (mut pat, mut got) = (segments(pattern), segments(path));
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(g)) => match p.strip_prefix(':') {
                Some(n) if !g.is_empty() => params.push((n, g.to_owned())),
                Some(_) => return None,
                None if p == g => {}
                None => return None,
            },
            _ => return None,
        }
    }
}

/// Handles a click on a same-site link in the page instead of letting the
/// browser load it. Left for the browser: modified clicks, `download`,
/// `target`, `rel="external"` links, and anything under `/api/`.
fn on_click(ev: web_sys::MouseEvent) {
    if ev.default_prevented()
        || ev.button() != 0
        || ev.meta_key()
        || ev.ctrl_key()
        || ev.shift_key()
        || ev.alt_key()
    {
        return;
    }
    let Some(link) = ev
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .and_then(|e| e.closest("a[href]").ok().flatten())
    else {
        return;
    };
    let external = link.has_attribute("download")
        || link.has_attribute("target")
        || link
            .get_attribute("rel")
            .is_some_and(|r| r.split_ascii_whitespace().any(|w| w == "external"));
    match link.get_attribute("href") {
        Some(href) if !external && is_in_app(&href) => {
            ev.prevent_default();
            navigate(&href);
        }
        _ => {}
    }
}

/// Whether a link's `href` is a page of this app (not another site, not the API).
pub fn is_in_app(href: &str) -> bool {
    href.starts_with('/') && !href.starts_with("//") && !href.starts_with("/api/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_patterns_match_exactly() {
        assert_eq!(match_path("/", "/"), Some(vec![]));
        assert_eq!(match_path("/hosts", "/hosts"), Some(vec![]));
        assert_eq!(match_path("/hosts", "/hosts/"), Some(vec![]));
        assert_eq!(match_path("/hosts", "/host"), None);
        assert_eq!(match_path("/hosts", "/hosts/x"), None);
        assert_eq!(match_path("/", "/hosts"), None);
        assert_eq!(
            match_path("/settings/roles", "/settings/roles"),
            Some(vec![])
        );
    }

    #[test]
    fn parameters_are_captured_in_order() {
        assert_eq!(
            match_path(
                "/hosts/:id/containers/:cid/logs",
                "/hosts/a1/containers/b2/logs"
            ),
            Some(vec![("id", "a1".to_owned()), ("cid", "b2".to_owned())])
        );
        assert_eq!(match_path("/hosts/:id", "/hosts/"), None);
        assert_eq!(match_path("/hosts/:id", "/hosts//"), None);
        assert_eq!(match_path("/hosts/:id", "/hosts/a1/containers"), None);
    }

    #[test]
    fn only_app_pages_are_handled_in_the_page() {
        assert!(is_in_app("/services/x"));
        assert!(is_in_app("/"));
        assert!(!is_in_app("/api/v1/audit?format=csv"));
        assert!(!is_in_app("//evil.example/"));
        assert!(!is_in_app("https://idp.example/authorize"));
        assert!(!is_in_app("#top"));
    }
}
