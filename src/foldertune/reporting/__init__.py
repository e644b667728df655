"""What a person reads: figures drawn from the run folder and the self-contained report.html."""
