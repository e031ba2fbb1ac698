"""`fmstream replay`: logs through the joiner core and the trainers, judged period by period."""
