"""OAuth clients (relying parties): registration, secrets, redirect URIs."""
