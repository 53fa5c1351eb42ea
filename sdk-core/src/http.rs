//! The relay's HTTP API as the SDK reads it: what a failed answer means.

use super::json::Json;
use super::num;
use super::session::SdkError;

/// The error a failed answer from the relay stands for: the code and message of its
/// `{"error": {"code", "message"}}` body (`internal` and the HTTP status where it names none),
/// or, when the body was not JSON (`None`), that the relay answered without JSON.
pub fn relay_error(status: u16, body: Option<Json>) -> SdkError {
    let Some(mut body) = body else {
        return SdkError::new(
            "internal",
            ["the relay answered ", &num(status.into()), " without JSON"].concat(),
        );
    };
    let err = body.take("error").unwrap_or_default();
    let code = err["code"].as_str().unwrap_or("internal");
    match err["message"].as_str() {
        Some(message) => SdkError::new(code, message),
        None => SdkError::new(code, ["HTTP ", &num(status.into())].concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_error_body_is_the_error() {
        let body = Json::parse(r#"{"error":{"code":"unauthorized","message":"wrong secret"}}"#).unwrap();
        assert_eq!(relay_error(401, Some(body)), SdkError::new("unauthorized", "wrong secret"));
    }

    #[test]
    fn what_the_body_does_not_say_comes_from_the_status() {
        let body = Json::parse(r#"{"error":{"code":"not_found"}}"#).unwrap();
        assert_eq!(relay_error(404, Some(body)), SdkError::new("not_found", "HTTP 404"));
        let body = Json::parse(r#"{"oops":1}"#).unwrap();
        assert_eq!(relay_error(502, Some(body)), SdkError::new("internal", "HTTP 502"));
        assert_eq!(relay_error(500, Some(Json::Null)), SdkError::new("internal", "HTTP 500"));
    }

    #[test]
    fn a_body_that_is_not_json_says_so() {
        assert_eq!(relay_error(200, None), SdkError::new("internal", "the relay answered 200 without JSON"));
    }
}
