//! `multipart/form-data` for the job-report callback (`curl -F report=@r.json -F
//! digest=@d.json`, as the reference's upload step sends), read by `multer` (what axum's own
//! extractor uses). The body is already bounded by `MAX_BODY_BYTES`; the reader adds a bound on
//! the number of parts, and every malformation is a 400 naming it.

use crate::error::AppError;
use bytes::Bytes;
use std::convert::Infallible;

/// Most parts a body may have.
const MAX_PARTS: usize = 16;

fn bad(msg: impl std::fmt::Display) -> AppError {
    AppError::BadRequest(format!("Malformed multipart body: {msg}"))
}

/// The `boundary` parameter of a `multipart/form-data` content type, or `None` when the type is
/// not multipart.
pub fn boundary(content_type: &str) -> Option<Result<String, AppError>> {
    let mime = content_type.split(';').next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    Some(match multer::parse_boundary(content_type) {
        Ok(b) if !b.is_empty() && b.len() <= 70 => Ok(b),
        _ => Err(bad("the content type has no valid boundary")),
    })
}

/// Splits a body into `(name, content)` parts, in order.
pub async fn parts(body: Bytes, boundary: &str) -> Result<Vec<(String, Bytes)>, AppError> {
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(body) });
    let mut reader = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = reader.next_field().await.map_err(bad)? {
        if out.len() == MAX_PARTS {
            return Err(bad(format!("more than {MAX_PARTS} parts")));
        }
        let name = field
            .name()
            .map(str::to_string)
            .ok_or_else(|| bad("a part has no name"))?;
        let content = field.bytes().await.map_err(bad)?;
        out.push((name, content));
    }
    if out.is_empty() {
        return Err(bad("no parts"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_curl_bodies() {
        let b = boundary("multipart/form-data; boundary=------------------------abc123")
            .unwrap()
            .unwrap();
        let body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"report\"; filename=\"r.json\"\r\nContent-Type: application/octet-stream\r\n\r\n[1, 2]\r\n--{b}\r\nContent-Disposition: form-data; name=\"digest\"; filename=\"digest.json\"\r\n\r\n{{}}\r\n--{b}--\r\n"
        );
        let p = parts(Bytes::from(body), &b).await.unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].0.as_str(), &p[0].1[..]), ("report", &b"[1, 2]"[..]));
        assert_eq!((p[1].0.as_str(), &p[1].1[..]), ("digest", &b"{}"[..]));
        assert!(boundary("application/json").is_none());
        assert!(boundary("multipart/form-data").unwrap().is_err());
        assert_eq!(
            boundary("Multipart/Form-Data; boundary=\"x y\"")
                .unwrap()
                .unwrap(),
            "x y"
        );
    }

    #[tokio::test]
    async fn malformed_bodies_are_400() {
        let many: String = (0..=MAX_PARTS)
            .map(|i| format!("--b\r\nContent-Disposition: form-data; name=\"p{i}\"\r\n\r\nx\r\n"))
            .collect::<String>()
            + "--b--\r\n";
        for body in [
            "".to_string(),
            "--b".into(),
            "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--".into(),
            "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnever closed".into(),
            "--bX".into(),
            many,
        ] {
            let e = parts(Bytes::from(body.clone()), "b").await.unwrap_err();
            assert_eq!(e.status(), 400, "{body:?}");
        }
    }
}
