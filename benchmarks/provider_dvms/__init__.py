"""The echo DVMs the provider benchmark runs, each as a script in its own process."""
