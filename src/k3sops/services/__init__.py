"""Services: one verb each; gather through adapters, analyse with the domain, return models."""
