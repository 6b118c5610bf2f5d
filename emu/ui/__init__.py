"""Views: the run summary, narration, the stepper (rich renderables)."""
