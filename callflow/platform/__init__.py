"""What every part of the service stands on: configuration, errors, the store and its keys,
logs and metrics, the clock, Twilio's REST client, the URLs Twilio is given, the names of the
jobs, and the limits the flow language and the engine share. Imports nothing else of callflow."""
