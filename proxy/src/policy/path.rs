//! Path normalization before authorization. Istio's default `pathNormalization: BASE`
//! (Envoy `normalize_path`) evaluates policies on the path with RFC 3986 dot segments
//! removed, so `/public/../admin` is judged as `/admin` and cannot slip past
//! `DENY paths: ["/admin*"]`.

use std::borrow::Cow;

/// `path` with `.` and `..` segments removed (RFC 3986 §5.2.4); borrowed when there
/// are none, which is the common case.
pub fn normalize(path: &str) -> Cow<'_, str> {
    let has_dots = path.split('/').any(|seg| seg == "." || seg == "..");
    if !has_dots {
        return Cow::Borrowed(path);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut p = String::with_capacity(path.len());
    for s in &out {
        p.push('/');
        p.push_str(s);
    }
    if trailing_slash || p.is_empty() {
        p.push('/');
    }
    Cow::Owned(p)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(normalize("/a/b"), "/a/b");
        assert_eq!(normalize("/public/../admin"), "/admin");
        assert_eq!(normalize("/a/./b/"), "/a/b/");
        assert_eq!(normalize("/a/b/.."), "/a/");
        assert_eq!(normalize("/../../x"), "/x");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/a..b/c"), "/a..b/c");
    }
}
