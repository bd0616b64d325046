//! Configuration of commit statuses: the forges they go to (`COMMIT_STATUS_FORGES`, the
//! `*_API_TOKEN*` variables).

/// Which forge a status goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forge {
    GitHub,
    GitLab,
}

impl Forge {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
        }
    }
}
