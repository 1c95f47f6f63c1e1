"""callflow: confidential helpline call flows on Twilio.

The domain package. It knows flows, steps, call state and the privacy rules, and nothing of
Flask: the web application in ``webhooks`` imports it, never the other way round.
"""

__version__ = "0.1.0"
