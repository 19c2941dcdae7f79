//! Go's `path.Clean`, which both Go routers apply before routing: a path
//! that is not clean is answered with a 301 to its clean form
//! (docs/endpoints.md §5).

/// The shortest equivalent of an absolute path: `//` collapsed, `.`
/// removed, `..` resolved (never above the root). A trailing slash is kept,
/// as Go's `ServeMux` and gorilla mux keep it.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut cleaned = format!("/{}", parts.join("/"));
    if path.ends_with('/') && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

/// The redirect target for a path that is not clean, keeping the query.
pub fn redirect_target(path: &str, query: Option<&str>) -> Option<String> {
    let cleaned = clean(path);
    if cleaned == path {
        return None;
    }
    Some(match query {
        Some(q) => format!("{cleaned}?{q}"),
        None => cleaned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean("//v1/metadata"), "/v1/metadata");
        assert_eq!(clean("/v1/./tasks"), "/v1/tasks");
        assert_eq!(clean("/v1/../license"), "/license");
        assert_eq!(clean("/../.."), "/");
        assert_eq!(clean("/v1/metadata/"), "/v1/metadata/");
        assert_eq!(clean("/v1/."), "/v1");
        assert_eq!(clean("/"), "/");
        assert_eq!(redirect_target("/v1/tasks", Some("a=b")), None);
        assert_eq!(
            redirect_target("/v1//tasks", Some("taskarn=x")).as_deref(),
            Some("/v1/tasks?taskarn=x")
        );
    }
}
