"""For whoever runs the service: provisioning Twilio's numbers to match the flows, and the
doctor's checks of a deployment."""
