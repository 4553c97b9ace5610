"""The service's routes, one module each: /localize, /jobs, health and info, the offline docs, the web page."""
