"""Account recovery, email verification, invitations and self-service sign-up, by single-use links sent by mail."""
