//! What can go wrong, each with the exit code the CLI documents.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Bad usage or input: the command cannot be carried out as given. Exit 2.
    #[error("{0}")]
    Invalid(String),
    /// The thing asked for does not exist. Exit 3.
    #[error("{0}")]
    NotFound(String),
    /// The controller or broker reports failure. Exit 4.
    #[error("{0}")]
    Failed(String),
    /// Waiting ran out of time. Exit 5.
    #[error("{0}")]
    TimedOut(String),
    /// The API refused the request or could not be reached. Exit 1.
    #[error("{message}")]
    Api {
        message: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// Reading the kubeconfig or a file failed. Exit 1.
    #[error("{0}")]
    Local(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Api { .. } | Error::Local(_) => 1,
            Error::Invalid(_) => 2,
            Error::NotFound(_) => 3,
            Error::Failed(_) => 4,
            Error::TimedOut(_) => 5,
        }
    }

    /// Turns an API error into one the user can act on: a 404 is "not found" (exit 3), a 400 or
    /// 422 is bad input with the server's causes (exit 2), a refused connection says where it
    /// tried to connect.
    pub fn from_kube(what: impl std::fmt::Display, error: kube::Error) -> Error {
        match &error {
            kube::Error::Api(status) if status.code == 404 => {
                Error::NotFound(format!("{what}: not found"))
            }
            kube::Error::Api(status) if status.code == 400 || status.code == 422 => {
                Error::Invalid(format!("{what}: {}", status.message))
            }
            kube::Error::Api(status) => Error::Api {
                message: format!("{what}: {}", status.message),
                source: Box::new(error),
            },
            other => Error::Api {
                message: format!("{what}: cannot reach the API server: {}", root_cause(other)),
                source: Box::new(error),
            },
        }
    }
}

/// The innermost error's message: for a refused connection, "Connection refused" rather than
/// three layers of client wrapping.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
