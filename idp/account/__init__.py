"""The signed-in user's own account page: sessions, password, granted applications."""
