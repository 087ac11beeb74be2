"""Machine-to-machine authentication: OAuth2 client credentials and bearer JWTs."""
