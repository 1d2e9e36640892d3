//! The console's files, embedded in the component so that it needs no file mount (Spin's
//! `files` would have to be copied by every deployment target alike).

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("../static/index.html").as_bytes(),
};

/// Every file by its path under `/console` (`""` and `"/"` are the page itself). The app's
/// own routes live in the URL fragment (`#/orders/...`), so no other path serves the page.
const FILES: &[(&str, Asset)] = &[
    ("", INDEX),
    ("/", INDEX),
    ("/index.html", INDEX),
    (
        "/app.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("../static/app.css").as_bytes(),
        },
    ),
    (
        "/app.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("../static/app.js").as_bytes(),
        },
    ),
    (
        "/favicon.svg",
        Asset {
            content_type: "image/svg+xml",
            body: include_bytes!("../static/favicon.svg"),
        },
    ),
];

/// The file served at `path` (the part after `/console`).
pub fn lookup(path: &str) -> Option<Asset> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_served_with_their_types() {
        assert_eq!(
            lookup("/").unwrap().content_type,
            "text/html; charset=utf-8"
        );
        assert_eq!(lookup("").unwrap(), lookup("/index.html").unwrap());
        assert!(lookup("/app.js")
            .unwrap()
            .content_type
            .starts_with("text/javascript"));
        assert!(lookup("/app.css")
            .unwrap()
            .content_type
            .starts_with("text/css"));
        assert_eq!(
            lookup("/favicon.svg").unwrap().content_type,
            "image/svg+xml"
        );
        assert_eq!(lookup("/static/app.js"), None);
        assert_eq!(lookup("/../Cargo.toml"), None);
    }

    /// The page loads nothing from elsewhere: the CSP would block it anyway, and an
    /// operator console must work on a network with no way out.
    #[test]
    fn no_file_refers_to_another_origin() {
        for (path, asset) in FILES {
            let text = std::str::from_utf8(asset.body).unwrap();
            for needle in ["http://", "https://", "//cdn", "src=\"//", "href=\"//"] {
                let allowed = needle == "http://" && text.contains("http://www.w3.org/2000/svg");
                let count = text.matches(needle).count();
                let svg_ns = text.matches("http://www.w3.org/2000/svg").count();
                assert!(
                    count == 0 || (allowed && count == svg_ns),
                    "{path} mentions {needle}"
                );
            }
        }
    }

    /// No inline script or style: the CSP allows only the page's own files.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains(" style="), "style attribute");
        for handler in [
            "onclick=",
            "onload=",
            "onsubmit=",
            "onerror=",
            "oninput=",
            "onchange=",
        ] {
            assert!(!page.contains(handler), "inline event handler {handler}");
        }
    }
}
