"""Staff accounts and signing in: accounts and their secrets, sign-in on the web and by PIN on
a phone line, and the limits that keep guessing slow."""
