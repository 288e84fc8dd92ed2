FROM --platform=linux//x alpine
