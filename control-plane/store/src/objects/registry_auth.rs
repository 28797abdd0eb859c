//! Registry credentials as a service stores them (`--with-registry-auth`, docs/images.md,
//! "Credentials"): a user name and password (or token) for one registry. The image store
//! reads them from docker's configuration and pulls with them. Never logged: `Debug` hides
//! the secret.

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}
