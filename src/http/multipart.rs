//! A small `multipart/form-data` reader for the job-report callback (`curl -F report=@r.json
//! -F digest=@d.json`, as the reference's upload step sends). The body is already bounded by
//! `MAX_BODY_BYTES`; the reader only splits it into named parts, and every malformation is a
//! 400 naming it.

use crate::error::AppError;

/// Most parts a body may have.
const MAX_PARTS: usize = 16;

fn bad(msg: impl Into<String>) -> AppError {
    AppError::BadRequest(format!("Malformed multipart body: {}", msg.into()))
}

/// The `boundary` parameter of a `multipart/form-data` content type, or `None` when the type is
/// not multipart.
pub fn boundary(content_type: &str) -> Option<Result<String, AppError>> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let found = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    Some(match found {
        Some(b) if !b.is_empty() && b.len() <= 70 => Ok(b),
        _ => Err(bad("the content type has no valid boundary")),
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The `name` of a part from its headers.
fn part_name(headers: &str) -> Option<String> {
    headers.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        v.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
        })
    })
}

/// Splits a body into `(name, content)` parts.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<(String, &'a [u8])>, AppError> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let mut pos =
        find(body, delim.as_bytes(), 0).ok_or_else(|| bad("no boundary line"))? + delim.len();
    let mut out = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(out);
        }
        // Transport padding after the boundary, then CRLF.
        while body.get(pos).is_some_and(|b| *b == b' ' || *b == b'\t') {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(bad("a boundary line is not followed by CRLF"));
        }
        pos += 2;
        let head_end =
            find(body, b"\r\n\r\n", pos).ok_or_else(|| bad("a part has no end of headers"))?;
        let headers = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| bad("part headers are not UTF-8"))?;
        let name = part_name(headers).ok_or_else(|| bad("a part has no name"))?;
        let start = head_end + 4;
        let end = find(body, next_delim.as_bytes(), start)
            .ok_or_else(|| bad("the body ends without a closing boundary"))?;
        out.push((name, &body[start..end]));
        if out.len() > MAX_PARTS {
            return Err(bad(format!("more than {MAX_PARTS} parts")));
        }
        pos = end + next_delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_curl_bodies() {
        let b = boundary("multipart/form-data; boundary=------------------------abc123")
            .unwrap()
            .unwrap();
        let body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"report\"; filename=\"r.json\"\r\nContent-Type: application/octet-stream\r\n\r\n[1, 2]\r\n--{b}\r\nContent-Disposition: form-data; name=\"digest\"; filename=\"digest.json\"\r\n\r\n{{}}\r\n--{b}--\r\n"
        );
        let p = parts(body.as_bytes(), &b).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].0.as_str(), p[0].1), ("report", &b"[1, 2]"[..]));
        assert_eq!((p[1].0.as_str(), p[1].1), ("digest", &b"{}"[..]));
        assert!(boundary("application/json").is_none());
        assert!(boundary("multipart/form-data").unwrap().is_err());
        assert_eq!(
            boundary("Multipart/Form-Data; boundary=\"x y\"")
                .unwrap()
                .unwrap(),
            "x y"
        );
    }

    #[test]
    fn malformed_bodies_are_400() {
        for body in [
            "",
            "--b",
            "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
            "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnever closed",
            "--bX",
        ] {
            let e = parts(body.as_bytes(), "b").unwrap_err();
            assert_eq!(e.status(), 400, "{body:?}");
        }
    }
}
