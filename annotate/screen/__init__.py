"""The content screen's detectors, free of Django: text in, spans out (annotate.services.screening records them)."""
